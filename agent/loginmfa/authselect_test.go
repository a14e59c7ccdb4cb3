package loginmfa

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var authselectFixtures = []string{"sssd/system-auth", "sssd/password-auth", "local/system-auth", "local/password-auth",
	"winbind/system-auth", "winbind/password-auth"}

// TestAuthselectProfiles rewrites the shapes of RHEL's profiles
// (testdata/authselect/README.md) and checks what RewriteAuthselect
// proves for every feature combination, plus the rewrite's shape: each
// first factor is followed by pam_mamori.so, each jump that crosses one
// is lengthened, and the rewrite is idempotent.
func TestAuthselectProfiles(t *testing.T) {
	for _, name := range authselectFixtures {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata/authselect", name))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, changed, err := RewriteAuthselect(in)
			if err != nil || !changed {
				t.Fatalf("rewrite: changed=%v %v", changed, err)
			}
			t.Logf("rewritten and proved in %v", time.Since(start).Round(time.Millisecond))
			if again, changed, err := RewriteAuthselect(out); err != nil || changed || !bytes.Equal(again, out) {
				t.Fatalf("second rewrite: changed=%v %v", changed, err)
			}
			// With the feature and the features a RHEL 9 sssd system
			// usually has: the code follows the password.
			r, err := RenderAuthselect(out, []string{"with-faillock", AuthselectFeature})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rendered with with-faillock with-mamori:\n%s", authLines(string(r)))
			factors, mamori := 0, 0
			ls := strings.Split(authLines(string(r)), "\n")
			for i, l := range ls {
				if strings.Contains(l, "pam_mamori.so") {
					mamori++
					if i == 0 || !strings.Contains(ls[i-1], "success=ok") {
						t.Errorf("pam_mamori.so not after a first factor: %q after %q", l, ls[i-1])
					}
				}
				if strings.Contains(l, "pam_unix.so") || strings.Contains(l, "pam_sss.so forward_pass") || strings.Contains(l, "pam_winbind.so") {
					factors++
				}
			}
			if mamori == 0 || mamori != factors {
				t.Errorf("%d pam_mamori.so lines for %d password modules", mamori, factors)
			}
			// Without the feature: the original rendering.
			a, _ := RenderAuthselect(in, []string{"with-faillock"})
			b, _ := RenderAuthselect(out, []string{"with-faillock"})
			if !bytes.Equal(a, b) {
				t.Errorf("without with-mamori the file differs:\n%s\n---\n%s", a, b)
			}
		})
	}
}

func authLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "auth") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAuthselectJumps: the jumps that steer a directory user past
// pam_unix are lengthened by exactly the lines inserted in their way.
func TestAuthselectJumps(t *testing.T) {
	in, _ := os.ReadFile("testdata/authselect/sssd/system-auth")
	out, _, err := RewriteAuthselect(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		features []string
		want     []string
	}{
		{nil, []string{
			"auth [default=1 ignore=ignore success=ok] pam_usertype.so isregular", // skips localuser only: unchanged
			"[success=ok ignore=ignore default=2] pam_localuser.so",               // pam_unix and its pam_mamori.so
			"[success=ok new_authtok_reqd=ok default=1] pam_unix.so nullok",       // wrong password: over the code
			"[success=done default=die] pam_mamori.so",                            // right password: the code
			"[success=ok ignore=ignore default=2] pam_usertype.so isregular",      // pam_sss and its pam_mamori.so
			"[success=ok new_authtok_reqd=ok default=1] pam_sss.so forward_pass",
		}},
		{[]string{"with-smartcard"}, []string{
			"[success=ok ignore=ignore default=4] pam_localuser.so", // pam_sss try_cert_auth, pam_unix, both pam_mamori.so
			"[success=ok authinfo_unavail=1 user_unknown=1 ignore=1 default=die] pam_sss.so try_cert_auth",
		}},
		{[]string{"with-smartcard-required"}, []string{
			"[success=2 default=ignore] pam_succeed_if.so service notin", // require_cert_auth and its pam_mamori.so
			"[success=ok ignore=1 default=die] pam_sss.so require_cert_auth",
		}},
	} {
		r, err := RenderAuthselect(out, append(c.features, AuthselectFeature))
		if err != nil {
			t.Fatal(err)
		}
		norm := normalise(authLines(string(r)))
		for _, w := range c.want {
			if !strings.Contains(norm, normaliseControl(w)) {
				t.Errorf("features %v: no %q in\n%s", c.features, w, norm)
			}
		}
	}
}

// normalise squeezes blanks so lines compare regardless of alignment.
func normalise(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(out, "\n")
}

// normaliseControl writes a wanted control the way formatControl orders
// it: by return value, default last.
func normaliseControl(w string) string {
	if !strings.HasPrefix(w, "[") {
		return w
	}
	end := strings.IndexByte(w, ']')
	a, err := ParseControl(w[:end+1])
	if err != nil {
		panic(err)
	}
	return formatControl(a) + w[end+1:]
}

// TestAuthselectRefuses: shapes the rewrite cannot keep right are
// refused with a reason, never guessed.
func TestAuthselectRefuses(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"jump crossing a varying number of first factors",
			"auth [default=1] pam_localuser.so\nauth sufficient pam_fprintd.so {include if \"a\"}\nauth optional pam_echo.so {exclude if \"a\"}\nauth sufficient pam_unix.so\nauth required pam_deny.so\n",
			"depending on the features"},
		{"first factor that falls through on failure",
			"auth [success=done default=bad] pam_unix.so\nauth required pam_deny.so\n", "would fall through"},
		{"include in the auth section", "auth include other-auth\nauth required pam_deny.so\n", "include or substack"},
		{"feature already used", "auth sufficient pam_unix.so {include if \"with-mamori\"}\n", "already uses"},
		{"bad expression", "auth sufficient pam_unix.so {include if \"a\" nand \"b\"}\n", "unknown word"},
		{"too many features", manyFeatures(maxTemplateFeatures + 1), "features"},
		// Found by FuzzAuthselect: the type field not followed by a
		// blank of the raw line (an operator glued to it, or no blank the
		// old offset code knew) once cut the line at offset -1.
		{"operator glued to the type", "auth{include if \"a\"} sufficient pam_unix.so\nauth required pam_deny.so\n", "control field not understood"},
		{"operator glued, no blank after it", "auth{include if \"a\"}\fsufficient pam_unix.so\nauth required pam_deny.so\n", "control field not understood"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := RewriteAuthselect([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	// Every blank the tokenizer knows (\f \v \r too) separates the fields
	// when the rewrite finds the control field: same result as spaces.
	plain := "auth required pam_env.so\nauth [default=1] pam_localuser.so\nauth sufficient pam_unix.so\nauth required pam_deny.so\n"
	want, changed, err := RewriteAuthselect([]byte(plain))
	if err != nil || !changed {
		t.Fatalf("plain: changed=%v %v", changed, err)
	}
	for _, b := range []string{"\f", "\v", "\r", "\t \f"} {
		odd := strings.ReplaceAll(plain, " ", b)
		got, changed, err := RewriteAuthselect([]byte(odd))
		if err != nil || !changed {
			t.Fatalf("blank %q: changed=%v %v", b, changed, err)
		}
		if g, w := strings.Fields(string(got)), strings.Fields(string(want)); strings.Join(g, " ") != strings.Join(w, " ") {
			t.Fatalf("blank %q: rewrite\n%q\nwant the fields of\n%q", b, got, want)
		}
	}

	// The proof catches the naive insert: pam_mamori.so right after
	// pam_unix.so with the jumps left as they were lets a directory user
	// (pam_localuser fails, default=1) land on the code prompt with no
	// password, and in with the code alone.
	in, _ := os.ReadFile("testdata/authselect/sssd/password-auth")
	lines := strings.Split(string(in), "\n")
	var naive []string
	for _, l := range lines {
		naive = append(naive, l)
		if strings.Contains(l, "pam_unix.so {if") && strings.HasPrefix(l, "auth") {
			naive = append(naive, "auth required pam_mamori.so "+authselectFeatureOp)
		}
	}
	err = proveAuthselect(lines, []byte(strings.Join(naive, "\n")), []string{"with-faillock"})
	if err == nil || !strings.Contains(err.Error(), "jumps (") {
		t.Fatalf("naive insert: %v", err)
	}
	t.Logf("naive insert refused: %v", err)
	// So does the old line before the first jump (code before password).
	var before []string
	for _, l := range lines {
		if strings.Contains(l, "pam_usertype.so") && len(before) > 0 && !strings.Contains(strings.Join(before, ""), "pam_mamori") {
			before = append(before, authselectLine)
		}
		before = append(before, l)
	}
	if err := proveAuthselect(lines, []byte(strings.Join(before, "\n")), nil); err == nil || !strings.Contains(err.Error(), "reaches pam_mamori.so") {
		t.Fatalf("code first: %v", err)
	} else {
		t.Logf("code before password refused: %v", err)
	}
	// The line an earlier agent put before the first jump is replaced.
	old := "auth required pam_env.so\n" + authselectLine + "\nauth [default=1] pam_localuser.so\nauth sufficient pam_unix.so\nauth required pam_deny.so\n"
	out, changed, err := RewriteAuthselect([]byte(old))
	if err != nil || !changed || strings.Contains(string(out), authselectLine) {
		t.Fatalf("old line: changed=%v %v\n%s", changed, err, out)
	}
}

func manyFeatures(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("auth optional pam_echo.so {include if \"f" + string(rune('a'+i)) + "\"}\n")
	}
	b.WriteString("auth sufficient pam_unix.so\nauth required pam_deny.so\n")
	return b.String()
}

// TestRenderAuthselect: the template language as authselect-profiles(5)
// describes it.
func TestRenderAuthselect(t *testing.T) {
	tmpl := `{imply "b" if "a"}
one {include if "a"}
two {exclude if "b"}
three {if "a":yes|no} {if not "a":only-not}
four {include if "a" and ("b" or "c")}
five {include if not "c"} {exclude if "a"}
six {continue if "d"}
seven
`
	for _, c := range []struct {
		on   []string
		want string
	}{
		// A false `continue if` ends the file at the operator (the text
		// before it stays, as in authselect's template.c).
		{nil, "two\nthree no only-not\nfive\nsix"},
		{[]string{"a"}, "one\nthree yes\nfour\nsix"},
		{[]string{"d"}, "two\nthree no only-not\nfive\nseven\n"},
	} {
		got, err := RenderAuthselect([]byte(tmpl), c.on)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%v: got %q want %q", c.on, got, c.want)
		}
	}
	for _, bad := range []string{`x {include if "a" and}`, `x {include if ("a"}`, `x {include if "a" "b"}`, `x {include if not}`} {
		if _, err := RenderAuthselect([]byte(bad), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := RenderAuthselect(make([]byte, MaxFileSize+1), nil); err == nil {
		t.Error("oversized template accepted")
	}
}
