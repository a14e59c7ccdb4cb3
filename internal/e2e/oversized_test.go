package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/wire"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// TestOversizedEventDoesNotBlockTheSpool: an event over the server's
// limits (here one spooled as an older agent would have, bypassing the
// emitter) is made to fit when sent, is stored with a note of what was
// cut, and the events behind it are delivered too — a report the server
// refused would have been retried forever, holding them all back.
func TestOversizedEventDoesNotBlockTheSpool(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	dir := enrolAgent(t, h, t.TempDir(), "pc-big")
	sp, err := spool.Open(filepath.Join(dir.Path(), "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}

	big := map[string]string{"model": strings.Repeat("M", 10000)}
	for i := range 100 {
		big[strings.Repeat("k", 10)+string(rune('a'+i%26))+strings.Repeat("z", i)] = "v"
	}
	first := &mamoriv1.Event{Id: daemon.NewEventID(), Time: timestamppb.New(h.Clock.Now()), Control: "media", Kind: "usb_blocked", Attributes: big}
	if err := sp.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	after := &mamoriv1.Event{Id: daemon.NewEventID(), Time: timestamppb.New(h.Clock.Now()), Control: "media", Kind: "usb_blocked",
		Attributes: map[string]string{"serial": "AFTER"}}
	if err := sp.Append(ctx, after); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	a2 := startAgent(t, dir, h.Clock.Now, "pc-big")
	a2.waitRound(t, "a round that delivered the spool", func(r daemon.RoundResult) bool { return r.Err == nil && a2.spool.Len() == 0 })

	evs, err := h.Srv.Store().ListEvents(ctx, store.EventFilter{DeviceID: deviceID(t, dir), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*mamoriv1.Event{}
	for _, e := range evs {
		got[e.Event.Id] = e.Event
	}
	f, ok := got[first.Id]
	if !ok || got[after.Id] == nil {
		t.Fatalf("stored: oversized %v, the one behind it %v", ok, got[after.Id] != nil)
	}
	if len(f.Attributes) > wire.MaxMapEntries || len(f.Attributes["model"]) > wire.MaxLongString || !strings.Contains(f.Attributes[wire.TruncatedKey], "entries_dropped=") {
		t.Fatalf("oversized event stored as %d attributes, model %d bytes, note %q", len(f.Attributes), len(f.Attributes["model"]), f.Attributes[wire.TruncatedKey])
	}
}
