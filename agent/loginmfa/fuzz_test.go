package loginmfa

import (
	"bytes"
	"os"
	"testing"
	"testing/fstest"
)

// FuzzPAMStack feeds a service file and one file it may include to the
// reader and the stack rule. Invariants: no panic, bounded work, Required
// only when Present, and a stack whose files did not parse is never
// silently clean (every unparsable auth line becomes a Problem).
func FuzzPAMStack(f *testing.F) {
	f.Add([]byte("auth required pam_mamori.so\n"), []byte(""))
	f.Add([]byte("auth optional pam_faildelay.so delay=3000000\n@include common-auth\n"), []byte(debianCommonAuth))
	f.Add([]byte("auth sufficient pam_rootok.so\n@include common-auth\n"), []byte(debianCommonAuth))
	f.Add([]byte("auth substack common-auth\nauth [success=1 default=ignore] pam_unix.so\nauth required pam_mamori.so\n"), []byte("auth [success=done default=die] pam_unix.so\n"))
	f.Add([]byte("auth include common-auth\n"), []byte("auth include login\n"))
	f.Add([]byte("auth \\\n required \\\n pam_mamori.so [a=b\\]c] # x\n"), []byte("-auth [default=reset] pam_env.so\n"))
	f.Add([]byte("auth [success=ok new_authtok_reqd=ok ignore=reset default=2] pam_unix.so\nauth required pam_mamori.so\nauth required pam_permit.so\n"), []byte(""))
	f.Fuzz(func(t *testing.T, service, included []byte) {
		fsys := fstest.MapFS{
			"etc/pam.d/login":       {Data: service},
			"etc/pam.d/common-auth": {Data: included},
		}
		st, err := LoadStack(fsys, "login")
		if err != nil {
			return
		}
		if len(st.Entries) > MaxEntries+1+MaxLevel*2 {
			t.Fatalf("%d entries", len(st.Entries))
		}
		v := Evaluate(st.Entries)
		if v.Required && !v.Present {
			t.Fatal("required but not present")
		}
		if v.Present && !v.Required && v.Bypass == "" {
			t.Fatal("not required without a reason")
		}
		for _, b := range [][]byte{service, included} {
			lines, err := ParseFile(b)
			if err != nil {
				continue
			}
			for _, l := range lines {
				if l.Err == nil && l.Kind == KindModule && l.Module == "" {
					t.Fatal("module line without a module")
				}
				if l.No < 1 || l.No > bytes.Count(b, []byte("\n"))+1 {
					t.Fatalf("line number %d", l.No)
				}
			}
		}
	})
}

// FuzzSSHDConfig: `sshd -T` output never panics the reader or the bypass
// rule, and a configuration whose only method is publickey is always a
// bypass when keys are enabled.
func FuzzSSHDConfig(f *testing.F) {
	f.Add([]byte("usepam yes\npubkeyauthentication yes\nauthenticationmethods any\n"))
	f.Add([]byte("authenticationmethods publickey,keyboard-interactive keyboard-interactive\nkbdinteractiveauthentication yes\nusepam yes\n"))
	f.Add([]byte("authenticationmethods ,,, \x00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseSSHDConfig(b)
		c.Bypasses()
		c["authenticationmethods"] = "publickey"
		c["pubkeyauthentication"] = "yes"
		if len(c.Bypasses()) != 1 {
			t.Fatalf("key-only config not a bypass: %q", c.Bypasses())
		}
	})
}

// FuzzAuthselect feeds templates to RenderAuthselect and
// RewriteAuthselect. Invariants: no panic; a rewrite is idempotent, and
// what it returns passed its own proof (checked again here for no
// features and for with-mamori alone).
func FuzzAuthselect(f *testing.F) {
	for _, name := range []string{"local/password-auth", "winbind/password-auth"} {
		b, err := os.ReadFile("testdata/authselect/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("auth [default=1] pam_localuser.so\nauth sufficient pam_unix.so {include if \"a\" and not (\"b\" or \"c\")}\nauth required pam_deny.so\n"))
	f.Add([]byte("{imply \"b\" if \"a\"}\nauth sufficient pam_unix.so {if \"a\":x|y} {exclude if \"b\"}\n{continue if \"c\"}\nauth required pam_deny.so\n"))
	f.Add([]byte("auth [success=3 default=ignore] pam_unix.so\nauth sufficient pam_sss.so\nauth required pam_deny.so\n"))
	f.Fuzz(func(t *testing.T, tmpl []byte) {
		if len(tmpl) > 4096 {
			return
		}
		RenderAuthselect(tmpl, []string{"a", "with-mamori"})
		// The rewrite proves every feature combination (2^features): keep
		// fuzz inputs to a handful of feature names so each run is quick.
		if bytes.Count(tmpl, []byte{'"'}) > 16 {
			return
		}
		out, changed, err := RewriteAuthselect(tmpl)
		if err != nil || !changed {
			return
		}
		again, changed, err := RewriteAuthselect(out)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("second rewrite: changed=%v %v", changed, err)
		}
		r, err := RenderAuthselect(out, []string{AuthselectFeature})
		if err != nil {
			t.Fatal(err)
		}
		st, err := LoadStack(fstest.MapFS{"etc/pam.d/x": {Data: r}}, "x")
		if err != nil {
			t.Fatal(err)
		}
		if v := Evaluate(st.Entries); !v.Required {
			t.Fatalf("rewritten stack has a bypass: %s\n%s", v.Bypass, r)
		}
	})
}
