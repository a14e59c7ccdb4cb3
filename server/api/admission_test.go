package api_test

import (
	"crypto/ecdsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/retryinfo"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// enrollWith sends one enrolment with the given key over a fresh TLS
// connection, as an agent retrying after a lost answer does.
func enrollWith(t *testing.T, h *servertest.Harness, token string, key *ecdsa.PrivateKey, host, machine string) (*mamoriv1.EnrollResponse, error) {
	t.Helper()
	csr, err := pki.NewCSR(key, host)
	if err != nil {
		t.Fatal(err)
	}
	cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
	defer cc.Close()
	return mamoriv1.NewAgentServiceClient(cc).Enroll(ctx, &mamoriv1.EnrollRequest{Token: token, Csr: csr, Facts: servertest.Facts(host, machine)})
}

func wantRetryHint(t *testing.T, err error, atLeast time.Duration) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	d, ok := retryinfo.Delay(err)
	if !ok || d < atLeast {
		t.Fatalf("retry hint %v (present %v), want at least %v", d, ok, atLeast)
	}
}

// A retried enrolment (same token, machine and key; the first answer was
// lost) succeeds again on a one-use token without spending another use;
// a second machine then finds the token used up.
func TestEnrollRetryKeepsTokenUse(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tok := h.Token(t, 1, 0)
	key, _ := pki.NewDeviceKey()
	first, err := enrollWith(t, h, tok, key, "pc-retry", "machine-retry")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		again, err := enrollWith(t, h, tok, key, "pc-retry", "machine-retry")
		if err != nil {
			t.Fatalf("retry %d: %v", i+1, err)
		}
		if again.DeviceId != first.DeviceId {
			t.Fatalf("retry %d enrolled device %s, want %s", i+1, again.DeviceId, first.DeviceId)
		}
	}
	other, _ := pki.NewDeviceKey()
	_, err = enrollWith(t, h, tok, other, "pc-other", "machine-other")
	wantCode(t, err, codes.PermissionDenied)
	_, err = enrollWith(t, h, tok, other, "pc-retry", "machine-retry")
	wantCode(t, err, codes.PermissionDenied) // same machine, new key: a new use
	if f := fleet(t, h); f.Total != 1 {
		t.Errorf("fleet total %d, want 1", f.Total)
	}
}

// enrollFrom sends one enrolment from source address ip (a loopback
// address), with a fresh key.
func enrollFrom(t *testing.T, h *servertest.Harness, ip, token, host, machine string) (*mamoriv1.EnrollResponse, error) {
	t.Helper()
	key, _ := pki.NewDeviceKey()
	csr, err := pki.NewCSR(key, host)
	if err != nil {
		t.Fatal(err)
	}
	cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"), servertest.FromSource(ip))
	defer cc.Close()
	return mamoriv1.NewAgentServiceClient(cc).Enroll(ctx, &mamoriv1.EnrollRequest{Token: token, Csr: csr, Facts: servertest.Facts(host, machine)})
}

// The reproduction: 50 calls naming a victim's machine ID (wrong tokens,
// then a token of the attacker's own) used to block the victim's real
// enrolment. Budgets are now the caller's address and its valid token:
// the attacker exhausts its own, the victim (another address, its own
// token) enrols at once.
func TestEnrollClaimedMachineIDSpendsNoBudget(t *testing.T) {
	lim := api.DefaultEnrollLimits()
	lim.PerTokenRate, lim.PerTokenBurst = 0.001, 5
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	attackerTok, victimTok := h.Token(t, 100, 0), h.Token(t, 100, 0)
	const attacker, victim, victimMachine = "127.0.0.2", "127.0.0.3", "machine-victim"
	bad := auth.EnrollmentTokenPrefix + strings.Repeat("a", 32) // well formed, unknown
	refusedAtOnce := 0
	for i := range 50 {
		_, err := enrollFrom(t, h, attacker, bad, "pc-attacker", victimMachine)
		switch status.Code(err) {
		case codes.PermissionDenied:
		case codes.ResourceExhausted:
			refusedAtOnce++
		default:
			t.Fatalf("bad token %d: %v", i, err)
		}
	}
	if refusedAtOnce != 50-lim.FailedTokenBurst {
		t.Errorf("%d of 50 wrong-token calls refused before the lookup, want %d (the address's failed-token budget is %d)",
			refusedAtOnce, 50-lim.FailedTokenBurst, lim.FailedTokenBurst)
	}
	// The attacker's own valid token, from a fresh address, naming the
	// victim's machine ID: its own token's budget runs out.
	for i := range 10 {
		_, err := enrollFrom(t, h, "127.0.0.4", attackerTok, "pc-attacker", victimMachine)
		if i < 5 && err != nil {
			t.Fatalf("attacker's enrolment %d within its token's burst: %v", i, err)
		}
		if i >= 5 {
			wantRetryHint(t, err, time.Second)
		}
	}
	if _, err := enrollFrom(t, h, victim, victimTok, "pc-victim", victimMachine); err != nil {
		t.Fatalf("the victim's enrolment after the attack: %v", err)
	}
}

// The reproduction: 10 enrolment calls naming "renew:<deviceID>" as the
// machine ID used to spend that device's renewal budget. Renewal has a
// budget of its own, keyed by the verified certificate.
func TestRenewBudgetIsTheDevices(t *testing.T) {
	lim := api.DefaultEnrollLimits()
	lim.RenewRate, lim.RenewBurst = 0.001, 1
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	d := enroll(t, h, "pc-renew")
	tok := h.Token(t, 100, 0)
	for range 10 {
		enrollFrom(t, h, "127.0.0.2", tok, "pc-x", "renew:"+d.ID)
		enrollFrom(t, h, "127.0.0.2", "bad", "pc-x", "renew:"+d.ID)
	}
	if _, err := d.Client.Renew(ctx, renewCSR(t, d)); err != nil {
		t.Fatalf("renewal after enrolments naming renew:%s: %v", d.ID, err)
	}
	_, err := d.Client.Renew(ctx, renewCSR(t, d))
	wantRetryHint(t, err, time.Second) // the device's own budget, spent by itself
}

// Retry hints are capped at 5 minutes however far the schedule of a
// refused crowd runs (82 minutes were seen before the cap).
func TestEnrollRetryHintCapped(t *testing.T) {
	lim := api.EnrollLimits{PerSourceRate: 0.0001, PerSourceBurst: 1, RetryAfter: time.Second}
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	tok := h.Token(t, 10, 0)
	if _, err := enrollFrom(t, h, "127.0.0.2", tok, "pc-h", "machine-h"); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		_, err := enrollFrom(t, h, "127.0.0.2", tok, "pc-h", "machine-h")
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("call %d: %v", i, err)
		}
		d, ok := retryinfo.Delay(err)
		raw := rawRetryDelay(t, err)
		if !ok || raw > api.MaxRetryHint || d > api.MaxRetryHint {
			t.Fatalf("call %d: retry hint %v (sent %v), want at most %v", i, d, raw, api.MaxRetryHint)
		}
	}
}

// rawRetryDelay is the hint as sent, before the client's own cap.
func rawRetryDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("no RetryInfo in %v", err)
	return 0
}

// Failed token attempts are counted per address and logged at WARN with
// the address; past the address's budget it is refused before any
// lookup, also with a valid token, while other addresses are not; a
// burst opens an enroll-token-guessing incident for that address.
func TestEnrollFailedTokensPerSource(t *testing.T) {
	var log syncBuffer
	lim := api.DefaultEnrollLimits()
	lim.FailedTokenRate, lim.FailedTokenBurst = 0.001, 12
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim, Log: &log})
	tok := h.Token(t, 10, 0)
	for i := range 12 {
		guess := auth.EnrollmentTokenPrefix + strings.Repeat("b", 31) + string(rune('a'+i))
		_, err := enrollFrom(t, h, "127.0.0.2", guess, "pc-g", "machine-g")
		wantCode(t, err, codes.PermissionDenied)
	}
	_, err := enrollFrom(t, h, "127.0.0.2", tok, "pc-g", "machine-g")
	wantRetryHint(t, err, time.Second)
	if _, err := enrollFrom(t, h, "127.0.0.3", tok, "pc-ok", "machine-ok"); err != nil {
		t.Fatalf("another address with a valid token: %v", err)
	}
	out := log.String()
	if n := strings.Count(out, `level=WARN msg="enrolment token refused" source=127.0.0.2`); n != 12 {
		t.Errorf("%d WARN lines with the source address for 12 wrong tokens; log:\n%s", n, out)
	}
	if strings.Contains(out, "bbbbbbbb") {
		t.Error("a guessed token is in the log")
	}

	w, err := incident.New(h.Srv.Store(), incident.DefaultConfig(), nil, h.Clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	ins, err := h.Srv.Store().Incidents(ctx, store.IncidentFilter{State: "active", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Rule != incident.RuleEnrollGuessing || ins[0].DeviceID != incident.SourcePrefix+"127.0.0.2" {
		t.Fatalf("incidents after 12 wrong tokens from one address: %+v", ins)
	}
}

// Past the per-source burst the address is refused, whatever the machine.
func TestEnrollPerSourceLimit(t *testing.T) {
	lim := api.EnrollLimits{PerSourceRate: 0.001, PerSourceBurst: 3, RetryAfter: 2 * time.Second}
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	tok := h.Token(t, 10, 0)
	for i := range 3 {
		key, _ := pki.NewDeviceKey()
		if _, err := enrollWith(t, h, tok, key, fmt.Sprintf("pc-s%d", i), fmt.Sprintf("machine-s%d", i)); err != nil {
			t.Fatalf("enrolment %d within the burst: %v", i+1, err)
		}
	}
	key, _ := pki.NewDeviceKey()
	_, err := enrollWith(t, h, tok, key, "pc-s9", "machine-s9")
	wantRetryHint(t, err, 2*time.Second)
	// A refusal writes nothing and spends no token use.
	if f := fleet(t, h); f.Total != 3 {
		t.Errorf("fleet total %d, want 3", f.Total)
	}
}

// The default limits are valid and let a rollout of 10,000 terminals from
// one address through in under 60 s.
func TestDefaultEnrollLimits(t *testing.T) {
	l := api.DefaultEnrollLimits()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if secs := float64(10000-l.PerSourceBurst) / l.PerSourceRate; secs >= 60 {
		t.Errorf("10,000 enrolments from one address take %.0f s at the default per-source limit", secs)
	}
	if l.MaxInFlight < 1 || l.PerTokenBurst < 1000 || l.RenewBurst < 3 || l.FailedTokenBurst < 5 {
		t.Errorf("defaults too tight: %+v (an attested enrolment is 2 calls, plus a retry)", l)
	}
	for _, bad := range []api.EnrollLimits{
		{PerSourceRate: -1}, {PerSourceRate: 1}, {PerTokenRate: 1}, {FailedTokenRate: 1}, {RenewRate: 1}, {MaxInFlight: -1}, {RetryAfter: time.Hour},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
