package loginmfa

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHostileConfig: malformed, hostile and oversized pam.d files never
// make a service look covered, never hang, and say what is wrong.
func TestHostileConfig(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		files   map[string]string
		problem string // part of a Problems entry, or of the error
		wantErr bool
	}{
		{"include loop", map[string]string{"login": "auth include a\nauth required pam_mamori.so\n", "a": "auth include b\n", "b": "auth include a\n"},
			"include loop: etc/pam.d/login → etc/pam.d/a → etc/pam.d/b → etc/pam.d/a", false},
		{"self include", map[string]string{"login": "@include login\nauth required pam_mamori.so\n"}, "include loop", false},
		{"substack loop", map[string]string{"login": "auth substack login\nauth required pam_mamori.so\n"}, "include loop", false},
		{"missing include", map[string]string{"login": "auth required pam_mamori.so\n@include common-auth\n"}, "file does not exist", false},
		{"include escapes", map[string]string{"login": "auth required pam_mamori.so\nauth include ../../etc/shadow\n"}, "not a usable path", false},
		{"include of a directory", map[string]string{"login": "auth required pam_mamori.so\nauth include /etc\n"}, "not a regular file", false},
		{"1 MB line", map[string]string{"login": "auth required pam_mamori.so " + big[:1<<20-40] + "\n"}, "line longer than", false},
		{"file over 1 MB", map[string]string{"login": "auth required pam_mamori.so\n#" + big + "\n"}, "larger than", true},
		{"unknown control", map[string]string{"login": "auth required pam_mamori.so\nauth maybe pam_unix.so\n"}, "unknown control", false},
		{"unknown action", map[string]string{"login": "auth required pam_mamori.so\nauth [success=perhaps] pam_unix.so\n"}, "unknown action", false},
		{"unclosed bracket", map[string]string{"login": "auth required pam_mamori.so\nauth [success=ok pam_unix.so\n"}, "unclosed", false},
		{"unknown type", map[string]string{"login": "auth required pam_mamori.so\nauht required pam_unix.so\n"}, "unknown type", false},
		{"deep nesting", deep(40), "nested deeper than 16", false},
		{"huge jump", map[string]string{"login": "auth [success=999999999 default=ignore] pam_unix.so\nauth required pam_mamori.so\n"}, "unknown action", false},
		{"NUL ends a line, as in libpam", map[string]string{"login": "auth required pam_mamori.so\x00 junk\nauth\x00sufficient pam_permit.so\n"}, "too few fields", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			st, err := LoadStack(fsWith(tt.files), "login")
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("err %v; want %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(st.Problems, "\n"), tt.problem) {
				t.Fatalf("problems %q; want %q", st.Problems, tt.problem)
			}
			v := Evaluate(st.Entries)
			// A problem line fails like libpam's MUST_FAIL entries, so the
			// search may find no success at all; the control reports such a
			// service as broken, never as covered (TestBrokenService).
			t.Logf("%s: %+v in %v", tt.name, v, time.Since(start))
			if time.Since(start) > 5*time.Second {
				t.Fatal("too slow")
			}
		})
	}
}

func deep(n int) map[string]string {
	m := map[string]string{"login": "auth required pam_mamori.so\nauth substack f0\n"}
	for i := range n {
		m["f"+itoa(i)] = "auth substack f" + itoa(i+1) + "\n"
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestJumpLimits: a stack of many jumps and substacks is searched within
// the state bound.
func TestJumpLimits(t *testing.T) {
	var b bytes.Buffer
	for range 300 {
		b.WriteString("auth [success=ok ignore=reset auth_err=2 default=1] pam_unix.so\n")
	}
	b.WriteString("auth required pam_mamori.so\n")
	start := time.Now()
	st, err := LoadStack(fsWith(map[string]string{"login": b.String()}), "login")
	if err != nil {
		t.Fatal(err)
	}
	v := Evaluate(st.Entries)
	if v.Required {
		t.Fatalf("jumps over the module: %+v", v)
	}
	t.Logf("%+v in %v", v, time.Since(start))
}

func TestParseControl(t *testing.T) {
	a, err := ParseControl("[success=ok new_authtok_reqd=ok ignore=ignore default=bad]")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := keywordActions("required")
	if a != r {
		t.Fatalf("bracket form of required differs:\n%v\n%v", a, r)
	}
	a, err = ParseControl("[Success=2 DEFAULT=Die]")
	if err != nil || a[pamSuccess] != 2 || a[7] != ActDie {
		t.Fatalf("%v %v", a, err)
	}
	for _, bad := range []string{"[success]", "[foo=ok]", "[success=0]", "[success=-1]", "reqired", "[success=ok"} {
		if _, err := ParseControl(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestAuthselectLine: the profile edit puts pam_mamori.so after the
// password module, not (as before issue 21) before the first jump, where
// the code was asked before the password.
func TestAuthselectLine(t *testing.T) {
	in := `auth        required                                     pam_env.so
auth        required                                     pam_faildelay.so delay=2000000
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        [default=1 ignore=ignore success=ok]         pam_localuser.so
auth        sufficient                                   pam_unix.so nullok
auth        required                                     pam_deny.so

account     required                                     pam_unix.so
`
	out, changed, err := RewriteAuthselect([]byte(in))
	if err != nil || !changed {
		t.Fatalf("changed=%v %v", changed, err)
	}
	r, err := RenderAuthselect(out, []string{AuthselectFeature})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(normalise(string(r)), "\n")
	want := []string{
		"auth required pam_env.so",
		"auth required pam_faildelay.so delay=2000000",
		"auth [default=1 ignore=ignore success=ok] pam_usertype.so isregular", // skips pam_localuser only: unchanged
		"auth [success=ok ignore=ignore default=2] pam_localuser.so",
		"auth [success=ok new_authtok_reqd=ok default=1] pam_unix.so nullok",
		"auth [success=done default=die] pam_mamori.so",
		"auth required pam_deny.so",
	}
	if got := strings.Join(lines[:len(want)], "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("rendered:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if again, changed, err := RewriteAuthselect(out); err != nil || changed || !bytes.Equal(again, out) {
		t.Fatal("second run changed the file")
	}
	st, _ := LoadStack(fsWith(map[string]string{"system-auth": string(r), "login": "auth substack system-auth\n"}), "login")
	if v := Evaluate(st.Entries); !v.Required {
		t.Fatalf("authselect result not covered: %+v", v)
	}
	// No auth line: nothing to follow, refused by the proof.
	if _, _, err := RewriteAuthselect([]byte("account required pam_unix.so")); err == nil {
		t.Fatal("a profile without auth lines was rewritten")
	}
}

func TestParseWtmp(t *testing.T) {
	at := time.Date(2026, 11, 25, 9, 0, 0, 123000, time.UTC)
	b := AppendUtmp(nil, Login{User: "tanaka", Line: "pts/0", Host: "192.0.2.1", At: at})
	dead := make([]byte, UtmpSize) // type 0: skipped
	b = append(b, dead...)
	b = append(b, 1, 2, 3) // partial
	ls, n := ParseWtmp(b)
	if n != 2*UtmpSize || len(ls) != 1 || ls[0] != (Login{User: "tanaka", Line: "pts/0", Host: "192.0.2.1", At: at}) {
		t.Fatalf("%+v %d", ls, n)
	}
}
