package regpolicy

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/windows/registry"
)

func requireLive(t *testing.T) {
	t.Helper()
	if os.Getenv(liveEnv) != "1" {
		t.Skipf("writes HKLM removable-storage policy: runs under wine (wine_test.go), or set %s=1 on a throwaway Windows machine", liveEnv)
	}
}

// TestRegistryLive applies a policy to the real registry, reads it back,
// tampers with it the way a local administrator would, and checks that
// Enforce finds the drift and re-applies the policy.
func TestRegistryLive(t *testing.T) {
	requireLive(t)
	ctx := context.Background()
	var r Registry

	want, err := Desired(DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(ctx, want); err != nil {
		t.Fatalf("apply: %v", err)
	}
	got, err := r.Read(ctx)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	if drift, err := Enforce(ctx, r, want); err != nil || len(drift) != 0 {
		t.Fatalf("Enforce right after apply: drift %v, err %v", drift, err)
	}

	// Tamper: delete one value, zero another, add a managed one, and add an
	// unmanaged one that must be left alone.
	removable := RemovableStorageKey + `\` + Classes[0].GUID
	optical := RemovableStorageKey + `\` + Classes[1].GUID
	setDWord(t, removable, DenyWrite, -1)
	setDWord(t, StoragePoliciesKey, WriteProtect, 0)
	setDWord(t, optical, DenyRead, 1)
	setDWord(t, optical, "Deny_All", 0)

	drift, err := Enforce(ctx, r, want)
	if err != nil {
		t.Fatalf("Enforce after tampering: %v", err)
	}
	var gotDrift []string
	for _, d := range drift {
		gotDrift = append(gotDrift, d.String())
	}
	wantDrift := []string{
		`HKLM\` + removable + `\Deny_Write: want 1, found absent`,
		`HKLM\` + optical + `\Deny_Read: want absent, found 1`,
		`HKLM\` + StoragePoliciesKey + `\WriteProtect: want 1, found 0`,
	}
	if d := cmp.Diff(wantDrift, gotDrift); d != "" {
		t.Errorf("drift (-want +got):\n%s", d)
	}
	got, err = r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("after re-apply (-want +got):\n%s", d)
	}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, optical, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.GetIntegerValue("Deny_All"); err != nil {
		t.Errorf("unmanaged value Deny_All was touched: %v", err)
	}
	k.Close()

	// Allow everything: every managed value goes.
	none, _ := Desired(Settings{ModeAllow, ModeAllow, ModeAllow})
	if err := r.Write(ctx, none); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Read(ctx); err != nil || len(got) != 0 {
		t.Errorf("after allow-all: %v, %v; want no managed values", got, err)
	}
}

// setDWord sets (n >= 0) or deletes (n < 0) one value.
func setDWord(t *testing.T, key, name string, n int) {
	t.Helper()
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, key, registry.SET_VALUE|registry.WOW64_64KEY)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if n < 0 {
		err = k.DeleteValue(name)
	} else {
		err = k.SetDWordValue(name, uint32(n))
	}
	if err != nil {
		t.Fatal(err)
	}
}
