package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// sum is the digest of s as the store keeps it (hex); raw as it goes on
// the wire.
func sum(s string) string { return hex.EncodeToString(raw(s)) }

func raw(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func failedStatus(control string) *mamoriv1.ControlStatus {
	st := enforced(control)
	st.State, st.Detail = mamoriv1.ControlState_CONTROL_STATE_FAILED, "udev rule missing"
	return st
}

// fullReport is a full report of the agent, media and isolation controls
// whose state digest is raw(name).
func fullReport(name string, media *mamoriv1.ControlStatus) *mamoriv1.ReportRequest {
	return &mamoriv1.ReportRequest{
		Facts:       servertest.Facts("pc-delta", "machine-pc-delta"),
		Statuses:    []*mamoriv1.ControlStatus{enforced("agent"), media, enforced("isolation")},
		StateDigest: raw(name),
	}
}

func TestDifferentialReports(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testDifferentialReports(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testDifferentialReports(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

// testDifferentialReports: the server's side of issue #20 through the real
// server. A full report stores the digest; a no-change report is answered
// without a row (last_seen moves only at the batched flush); a delta
// changes only what it names and the verdict is judged on the whole state;
// a delta against a digest the server does not hold is answered need_full
// with its events stored, and the full report that follows converges.
func testDifferentialReports(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	d, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-delta", "machine-pc-delta"))
	if err != nil {
		t.Fatal(err)
	}
	st := h.Srv.Store()
	dev := func() store.Device {
		t.Helper()
		got, err := st.GetDevice(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// A delta before any state: need_full, its event stored.
	ev0 := event("usb_blocked")
	resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("never"), StateDigest: raw("never"), Events: []*mamoriv1.Event{ev0}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.NeedFull || len(resp.AckedEventIds) != 1 || !resp.DeltasAccepted {
		t.Fatalf("delta without prior state: need_full=%v acked=%v deltas_accepted=%v", resp.NeedFull, resp.AckedEventIds, resp.DeltasAccepted)
	}

	// Full report.
	h.Clock.Advance(time.Minute)
	resp, err = d.Client.Report(ctx, fullReport("s1", enforced("media")))
	if err != nil || resp.NeedFull {
		t.Fatalf("full report: %v need_full=%v", err, resp.GetNeedFull())
	}
	if got := dev(); got.StateDigest != sum("s1") || got.Verdict != store.VerdictCompliant || len(got.Controls) != 3 {
		t.Fatalf("after full report: digest %q verdict %s controls %d", got.StateDigest, got.Verdict, len(got.Controls))
	}
	seen := dev().LastSeen

	// No change: answered; last_seen moves at the flush, not before.
	h.Clock.Advance(time.Minute)
	resp, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("s1"), PolicyDigest: "-"})
	if err != nil || resp.NeedFull {
		t.Fatalf("no-change report: %v need_full=%v", err, resp.GetNeedFull())
	}
	if got := dev().LastSeen; !got.Equal(seen) {
		t.Errorf("a no-change report wrote last_seen %v before the flush (want it batched)", got)
	}
	h.Srv.FlushHeartbeats()
	if got := dev().LastSeen; !got.Equal(h.Clock.Now().UTC().Truncate(time.Microsecond)) {
		t.Errorf("last_seen after the flush = %v, want %v", got, h.Clock.Now())
	}

	// A delta: media fails. The verdict is judged on the whole state
	// (agent and isolation from the store), and only media changes.
	h.Clock.Advance(time.Minute)
	resp, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("s1"), StateDigest: raw("s2"),
		Statuses: []*mamoriv1.ControlStatus{failedStatus("media")}})
	if err != nil || resp.NeedFull {
		t.Fatalf("delta: %v need_full=%v", err, resp.GetNeedFull())
	}
	got := dev()
	if got.StateDigest != sum("s2") || len(got.Controls) != 3 {
		t.Fatalf("after delta: digest %q controls %d", got.StateDigest, len(got.Controls))
	}
	for _, c := range got.Controls {
		want := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		if c.Status.Control == "media" {
			want = mamoriv1.ControlState_CONTROL_STATE_FAILED
		}
		if c.Status.State != want {
			t.Errorf("control %s is %v after the delta, want %v", c.Status.Control, c.Status.State, want)
		}
	}
	hist, err := st.ControlHistory(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 { // three appear, media fails; nothing for the no-change report
		t.Errorf("history has %d entries, want 4", len(hist))
	}

	// The server loses the state (here: the digest an older backup would
	// hold). The next delta gets need_full and its event is kept; the
	// full report that follows converges.
	if _, err := st.IngestReports(ctx, []store.ReportInput{{DeviceID: d.ID, CertSerial: got.CertSerial, ReceivedAt: h.Clock.Now(),
		Statuses: []*mamoriv1.ControlStatus{enforced("media")}, Verdict: store.VerdictCompliant, StateDigest: sum("s1")}}); err != nil {
		t.Fatal(err)
	}
	h.Clock.Advance(time.Minute)
	ev1 := event("usb_blocked")
	resp, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("s2"), StateDigest: raw("s2"), Events: []*mamoriv1.Event{ev1}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.NeedFull || len(resp.AckedEventIds) != 1 || resp.AckedEventIds[0] != ev1.Id {
		t.Fatalf("delta against a lost state: need_full=%v acked=%v", resp.NeedFull, resp.AckedEventIds)
	}
	resp, err = d.Client.Report(ctx, fullReport("s2", failedStatus("media")))
	if err != nil || resp.NeedFull {
		t.Fatalf("full report after need_full: %v %v", err, resp.GetNeedFull())
	}
	conv := dev()
	if conv.StateDigest != sum("s2") {
		t.Errorf("not converged: digest %q", conv.StateDigest)
	}
	for _, c := range conv.Controls {
		if c.Status.Control == "media" && c.Status.State != mamoriv1.ControlState_CONTROL_STATE_FAILED {
			t.Errorf("not converged: media is %v", c.Status.State)
		}
	}
	if n, err := st.CountEvents(ctx, d.ID); err != nil || n != 2 {
		t.Errorf("events stored = %d, %v; want 2 (none lost to need_full)", n, err)
	}
	resp, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("s2")})
	if err != nil || resp.NeedFull {
		t.Fatalf("no-change report after convergence: %v %v", err, resp.GetNeedFull())
	}
}

// TestDifferentialHostile: malformed digests, a delta naming a control the
// device never had, an oversized delta, and a digest without prior state
// get clear answers, and what was stored before stays.
func TestDifferentialHostile(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-delta", "machine-pc-delta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Report(ctx, fullReport("s1", enforced("media"))); err != nil {
		t.Fatal(err)
	}
	many := make([]*mamoriv1.ControlStatus, api.MaxStatuses+1)
	for i := range many {
		many[i] = enforced(fmt.Sprintf("c%05d", i))
	}
	for _, tc := range []struct {
		name string
		req  *mamoriv1.ReportRequest
		code codes.Code
		msg  string
	}{
		{"digest of 31 bytes", &mamoriv1.ReportRequest{StateDigest: raw("x")[:31]}, codes.InvalidArgument, "state_digest is 31 bytes: want a SHA-256"},
		{"short base", &mamoriv1.ReportRequest{StateDigest: raw("x"), BaseDigest: []byte("abc")}, codes.InvalidArgument, "base_digest is 3 bytes"},
		{"hex text for bytes", &mamoriv1.ReportRequest{BaseDigest: []byte(sum("s1"))}, codes.InvalidArgument, "base_digest is 64 bytes"},
		{"unknown control", &mamoriv1.ReportRequest{BaseDigest: raw("s1"), StateDigest: raw("s9"),
			Statuses: []*mamoriv1.ControlStatus{enforced("no-such-control")}, Events: []*mamoriv1.Event{event("usb_blocked")}},
			codes.InvalidArgument, `names control "no-such-control", which this device never reported`},
		{"oversized delta", &mamoriv1.ReportRequest{BaseDigest: raw("s1"), StateDigest: raw("s9"), Statuses: many}, codes.InvalidArgument, "control statuses; at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Client.Report(ctx, tc.req)
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
	got, err := h.Srv.Store().GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.StateDigest != sum("s1") || len(got.Controls) != 3 {
		t.Errorf("refused reports changed the state: digest %q controls %d", got.StateDigest, len(got.Controls))
	}
	if n, _ := h.Srv.Store().CountEvents(ctx, d.ID); n != 0 {
		t.Errorf("a refused report stored %d events (its agent resends them with the full report)", n)
	}
	// A device never reported full: its delta with a digest gets need_full.
	d2, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-delta-2", "machine-pc-delta-2"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d2.Client.Report(ctx, &mamoriv1.ReportRequest{BaseDigest: raw("s1"), StateDigest: raw("s1")})
	if err != nil || !resp.NeedFull {
		t.Fatalf("digest with no prior state: %v need_full=%v", err, resp.GetNeedFull())
	}
	if got, _ := h.Srv.Store().GetDevice(ctx, d2.ID); got.Verdict != store.VerdictNeverReported {
		t.Errorf("a refused delta set the verdict %s", got.Verdict)
	}
}

// TestSteadyStateRevocation: a revoked device's no-change reports are
// refused once the batched write has seen the revocation (made here
// through another server's path: the store directly), and its last_seen
// does not move.
func TestSteadyStateRevocation(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-delta", "machine-pc-delta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Report(ctx, fullReport("s1", enforced("media"))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Srv.Store().RevokeDevice(ctx, d.ID, "stolen", h.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	before, _ := h.Srv.Store().GetDevice(ctx, d.ID)
	noChange := &mamoriv1.ReportRequest{BaseDigest: raw("s1")}
	h.Clock.Advance(time.Minute)
	d.Client.Report(ctx, noChange) // may be answered from what this server knew
	h.Srv.FlushHeartbeats()
	_, err = d.Client.Report(ctx, noChange)
	wantCode(t, err, codes.PermissionDenied, codes.Unauthenticated)
	if after, _ := h.Srv.Store().GetDevice(ctx, d.ID); !after.LastSeen.Equal(before.LastSeen) {
		t.Errorf("a revoked device's last_seen moved: %v → %v", before.LastSeen, after.LastSeen)
	}
}
