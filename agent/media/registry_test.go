package media

import (
	"context"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/media/regpolicy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// mapStore stands in for the registry; the real one is tested under wine in
// regpolicy.
type mapStore struct{ s regpolicy.State }

func (m *mapStore) Read(context.Context) (regpolicy.State, error) {
	out := regpolicy.State{}
	for k, v := range m.s {
		out[k] = v
	}
	return out, nil
}

func (m *mapStore) Write(_ context.Context, want regpolicy.State) error {
	m.s = regpolicy.State{}
	for k, v := range want {
		m.s[k] = v
	}
	return nil
}

func TestRegistryControl(t *testing.T) {
	ctx := context.Background()
	store := &mapStore{s: regpolicy.State{}}
	em := &controltest.Emitter{}
	c := NewRegistry(RegistryOptions{Store: store, Emitter: em})
	enforce := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}

	// Monitor mode writes nothing and says what would change.
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil {
		t.Fatal(err)
	}
	st, _ := c.Status(ctx)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_MONITORING || len(store.s) != 0 {
		t.Fatalf("monitor: %v %q, %d values written", st.State, st.Detail, len(store.s))
	}

	// Enforce writes the policy; the first write is reported as drift from nothing.
	if err := c.Apply(ctx, enforce); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("enforce: %v %q", st.State, st.Detail)
	}
	em.Events() // drain: the first write is drift from nothing

	// Someone deletes a value locally: DEGRADED, then re-applied with an event.
	for k := range store.s {
		delete(store.s, k)
		break
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || !strings.Contains(st.Detail, "drifted") ||
		st.DetailId != "detail.media.registry-drift" || len(st.DetailArgs) != 1 {
		t.Fatalf("after tampering: %v %q (%q %q)", st.State, st.Detail, st.DetailId, st.DetailArgs)
	}
	if err := c.Apply(ctx, enforce); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("after re-apply: %v %q", st.State, st.Detail)
	}
	evs := em.Events()
	if len(evs) != 1 || evs[0].Kind != "policy_drift" {
		t.Fatalf("drift events %+v", evs)
	}

	// An allow-list cannot be honoured per device on Windows: say so.
	allow := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"allow": "0781:5581:4C530001"}}
	if err := c.Apply(ctx, allow); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || st.Evidence["allow_list"] == "" {
		t.Fatalf("allow-list: %v %v", st.State, st.Evidence)
	}

	// Invalid settings: the defaults are enforced, and the status says why.
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"storage": "sometimes"}}); err == nil {
		t.Fatal("invalid settings accepted")
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED {
		t.Fatalf("invalid settings: %v %q", st.State, st.Detail)
	}
}
