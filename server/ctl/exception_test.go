package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/ctl/ctltest"
)

// exceptionFixture adds exceptions (one in force, one revoked, one whose
// reason carries an escape sequence) and a ledger to the fleet fixture.
func exceptionFixture() *ctltest.Fake {
	f := fixture()
	f.Exceptions = []*mamoriv1.Exception{
		{Id: "e0000000-0000-4000-8000-000000000001", Usb: "0781:5581:4C530001231120115142", User: "tanaka",
			DeviceId: "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", Reason: "議会資料の受け渡し", CreatedBy: "op-1",
			CreatedAt: ts(-2 * time.Hour), ExpiresAt: ts(46 * time.Hour)},
		{Id: "e0000000-0000-4000-8000-000000000002", Usb: "054c:0243:ABC", Group: "市民課", Reason: "研修\x1b[31m",
			CreatedBy: "op-1", CreatedAt: ts(-50 * time.Hour), ExpiresAt: ts(-2 * time.Hour)},
		{Id: "e0000000-0000-4000-8000-000000000003", Usb: "0930:6545:XYZ", DeviceId: "3f2a9c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
			Reason: "監査", CreatedBy: "op-1", CreatedAt: ts(-3 * time.Hour), ExpiresAt: ts(21 * time.Hour),
			RevokedAt: ts(-1 * time.Hour), RevokedBy: "op-1", RevokeReason: "用件終了"},
	}
	f.Ledger = &mamoriv1.ListLedgerResponse{ImportedAt: ts(-24 * time.Hour), ImportedBy: "op-1", Rows: []*mamoriv1.LedgerRow{
		{AssetId: "A-001", Hostname: "pc-soumu-01", Group: "総務課", Location: "本庁舎2F", State: "enrolled", DeviceId: "3f2a9c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"},
		{AssetId: "A-002", Hostname: "pc-soumu-02", Group: "総務課", Location: "本庁舎2F", State: "never_enrolled"},
		{Hostname: "pc-new", State: "not_in_ledger", DeviceId: "d00dfeed-2222-4333-8444-555555555555"},
	}}
	return f
}

func TestExceptionGolden(t *testing.T) {
	dir := t.TempDir()
	ledgerFile := filepath.Join(dir, "ledger.csv")
	if err := os.WriteFile(ledgerFile, []byte("資産番号,ホスト名\nA-001,pc-soumu-01\nA-002,pc-soumu-02\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"exception-create", []string{"exception", "create", "--usb", "0781:5581:4C530001231120115142", "--device", "窓口端末-02",
			"--user", "tanaka", "--expires", "7d", "--reason", "議会資料の受け渡し"}},
		{"exception-list", []string{"exception", "list", "--all"}},
		{"exception-list-active", []string{"exception", "list"}},
		{"exception-revoke", []string{"exception", "revoke", "e0000000-0000-4000-8000-000000000001", "--reason", "用件終了"}},
		{"ledger-import", []string{"ledger", "import", ledgerFile, "--reason", "2026年度台帳"}},
		{"ledger-list", []string{"ledger", "list"}},
		{"help-exception-create", []string{"exception", "create", "-h"}},
		{"help-ledger-import", []string{"help", "ledger", "import"}},
	}
	for _, tt := range tests {
		for _, l := range langs {
			t.Run(tt.name+"/"+l.name, func(t *testing.T) {
				srv := ctltest.Start(t, exceptionFixture())
				r := run(t, srv, l.env, tt.args...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
				}
				got := strings.NewReplacer(srv.Addr, "SERVER:PORT", srv.CAFingerprint, "CA-FINGERPRINT").Replace(r.stdout)
				checkOutputSafe(t, got)
				checkGolden(t, tt.name+"."+l.name, got)
			})
		}
	}
}

func TestExceptionCommandErrors(t *testing.T) {
	srv := ctltest.Start(t, exceptionFixture())
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("資産番号,ホスト名\n!,pc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.csv")
	if err := os.WriteFile(big, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		en, ja string
	}{
		{"no target", []string{"exception", "create", "--usb", "0781:5581:X", "--expires", "1d", "--reason", "r"}, 2, "exactly one of --device and --group", "どちらか一方"},
		{"both targets", []string{"exception", "create", "--usb", "0781:5581:X", "--device", "a", "--group", "b", "--expires", "1d", "--reason", "r"}, 2, "exactly one", "どちらか一方"},
		{"no reason", []string{"exception", "create", "--usb", "0781:5581:X", "--device", "a", "--expires", "1d"}, 2, "reason is required", "理由が必要"},
		{"bad expiry", []string{"exception", "create", "--usb", "0781:5581:X", "--device", "a", "--expires", "soon", "--reason", "r"}, 2, "--expires \"soon\"", "--expires \"soon\""},
		{"no usb", []string{"exception", "create", "--device", "a", "--expires", "1d", "--reason", "r"}, 2, "--usb", "--usb"},
		{"revoke twice", []string{"exception", "revoke", "e0000000-0000-4000-8000-000000000003", "--reason", "r"}, 1, "", ""},
		{"ledger refused", []string{"ledger", "import", bad, "--reason", "r"}, 1, "row 2", "row 2"},
		{"ledger too large", []string{"ledger", "import", big, "--reason", "r"}, 2, "larger than 2 MiB", "2 MiB を超えて"},
		{"ledger missing file", []string{"ledger", "import", filepath.Join(dir, "none.csv"), "--reason", "r"}, 2, "cannot read", "読めません"},
	} {
		for _, l := range langs {
			t.Run(tc.name+"/"+l.name, func(t *testing.T) {
				r := run(t, srv, l.env, tc.args...)
				want := tc.en
				if l.name == "ja" {
					want = tc.ja
				}
				if r.code != tc.code || !strings.Contains(r.stderr, want) {
					t.Errorf("exit %d (want %d), stderr %q lacks %q", r.code, tc.code, r.stderr, want)
				}
			})
		}
	}
}
