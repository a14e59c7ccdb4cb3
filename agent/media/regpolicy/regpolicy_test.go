package regpolicy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	removable = RemovableStorageKey + `\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}`
	optical   = RemovableStorageKey + `\{53f56308-b6bf-11d0-94f2-00a0c91efb8b}`
	wpd1      = RemovableStorageKey + `\{6AC27878-A6FA-4155-BA85-F98F491D4F33}`
	wpd2      = RemovableStorageKey + `\{F33FDC04-D1AC-4E8E-9A30-19BBD4B108AE}`
	tape      = RemovableStorageKey + `\{53f5630b-b6bf-11d0-94f2-00a0c91efb8b}`
	floppy    = RemovableStorageKey + `\{53f56311-b6bf-11d0-94f2-00a0c91efb8b}`
)

var writeProtect = Value{StoragePoliciesKey, WriteProtect}

func TestDesired(t *testing.T) {
	tests := []struct {
		name string
		in   Settings
		want State
	}{
		{"all allowed leaves nothing", Settings{ModeAllow, ModeAllow, ModeAllow}, State{}},
		{"defaults: storage and optical read-only, MTP blocked", DefaultSettings(), State{
			{removable, DenyWrite}: 1, {tape, DenyWrite}: 1, {floppy, DenyWrite}: 1,
			{optical, DenyWrite}: 1,
			{wpd1, DenyRead}:     1, {wpd1, DenyWrite}: 1, {wpd2, DenyRead}: 1, {wpd2, DenyWrite}: 1,
			writeProtect: 1,
		}},
		{"storage blocked: read, write and execute denied", Settings{ModeBlock, ModeAllow, ModeAllow}, State{
			{removable, DenyRead}: 1, {removable, DenyWrite}: 1, {removable, DenyExecute}: 1,
			{tape, DenyRead}: 1, {tape, DenyWrite}: 1, {tape, DenyExecute}: 1,
			{floppy, DenyRead}: 1, {floppy, DenyWrite}: 1, {floppy, DenyExecute}: 1,
			writeProtect: 1,
		}},
		{"optical blocked alone: no WriteProtect", Settings{ModeAllow, ModeBlock, ModeAllow}, State{
			{optical, DenyRead}: 1, {optical, DenyWrite}: 1, {optical, DenyExecute}: 1,
		}},
		{"MTP read-only", Settings{ModeAllow, ModeAllow, ModeReadOnly}, State{
			{wpd1, DenyWrite}: 1, {wpd2, DenyWrite}: 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Desired(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Desired(%+v) (-want +got):\n%s", tt.in, d)
			}
			for v := range got {
				if !isManaged(v) {
					t.Errorf("Desired sets %s, which Managed does not list (Write would never delete it)", v)
				}
			}
		})
	}
}

func isManaged(v Value) bool {
	for _, m := range Managed() {
		if m == v {
			return true
		}
	}
	return false
}

func TestDesiredRefusesUnknownModes(t *testing.T) {
	_, err := Desired(Settings{Storage: "readonly", Optical: ModeAllow, MTP: ""})
	if err == nil {
		t.Fatal("unknown modes accepted")
	}
	for _, want := range []string{`media storage: mode "readonly"`, `media mtp: mode ""`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "optical") {
		t.Errorf("error %q blames the valid optical mode", err)
	}
}

func TestManagedCoversEveryClass(t *testing.T) {
	m := Managed()
	// 4 classes with execute × 3 + 2 WPD classes × 2 + WriteProtect.
	if len(m) != 4*3+2*2+1 {
		t.Errorf("Managed lists %d values, want 17", len(m))
	}
	seen := map[Value]bool{}
	for _, v := range m {
		if seen[v] {
			t.Errorf("%s listed twice", v)
		}
		seen[v] = true
	}
}

func TestDrift(t *testing.T) {
	want, _ := Desired(DefaultSettings())
	tests := []struct {
		name string
		got  State
		want []string
	}{
		{"holds", clone(want), nil},
		{"value deleted", without(want, Value{removable, DenyWrite}), []string{
			`HKLM\` + removable + `\Deny_Write: want 1, found absent`}},
		{"value zeroed", with(want, writeProtect, 0), []string{
			`HKLM\` + StoragePoliciesKey + `\WriteProtect: want 1, found 0`}},
		{"extra managed value added", with(want, Value{optical, DenyRead}, 1), []string{
			`HKLM\` + optical + `\Deny_Read: want absent, found 1`}},
		{"unmanaged value ignored", with(want, Value{optical, "Deny_All"}, 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range Drift(want, tt.got) {
				got = append(got, d.String())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Drift (-want +got):\n%s", d)
			}
		})
	}
}

// mapStore is a Store over a map; overwrite, when set, is what a competing
// policy source writes back after every Write.
type mapStore struct {
	s         State
	writes    int
	overwrite State
	readErr   error
}

func (m *mapStore) Read(context.Context) (State, error) { return clone(m.s), m.readErr }
func (m *mapStore) Write(_ context.Context, want State) error {
	m.writes++
	m.s = clone(want)
	for v, n := range m.overwrite {
		m.s[v] = n
	}
	return nil
}

func TestEnforce(t *testing.T) {
	ctx := context.Background()
	want, _ := Desired(DefaultSettings())

	t.Run("holds: no write", func(t *testing.T) {
		m := &mapStore{s: clone(want)}
		drift, err := Enforce(ctx, m, want)
		if err != nil || drift != nil || m.writes != 0 {
			t.Errorf("drift %v, err %v, writes %d; want none", drift, err, m.writes)
		}
	})
	t.Run("drift re-applied and returned", func(t *testing.T) {
		m := &mapStore{s: without(want, Value{removable, DenyWrite})}
		drift, err := Enforce(ctx, m, want)
		if err != nil || len(drift) != 1 || m.writes != 1 {
			t.Fatalf("drift %v, err %v, writes %d; want 1 drift, 1 write", drift, err, m.writes)
		}
		if d := cmp.Diff(want, m.s); d != "" {
			t.Errorf("after Enforce (-want +got):\n%s", d)
		}
	})
	t.Run("competing writer is an error", func(t *testing.T) {
		m := &mapStore{s: State{}, overwrite: State{writeProtect: 0}}
		_, err := Enforce(ctx, m, want)
		if err == nil || !strings.Contains(err.Error(), "still differs") {
			t.Errorf("err = %v, want a 'still differs' error", err)
		}
	})
	t.Run("unreadable is an error, no write", func(t *testing.T) {
		m := &mapStore{readErr: errors.New("access denied")}
		if _, err := Enforce(ctx, m, want); err == nil || m.writes != 0 {
			t.Errorf("err %v, writes %d", err, m.writes)
		}
	})
}

func clone(s State) State {
	out := State{}
	for k, v := range s {
		out[k] = v
	}
	return out
}

func with(s State, v Value, n uint32) State { c := clone(s); c[v] = n; return c }
func without(s State, v Value) State        { c := clone(s); delete(c, v); return c }
