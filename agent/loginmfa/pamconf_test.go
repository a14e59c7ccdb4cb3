package loginmfa

import (
	"strings"
	"testing"
	"testing/fstest"
)

// debianCommonAuth is Debian 12's common-auth as pam-auth-update writes it
// with the mamori profile enabled.
const debianCommonAuth = `#
# /etc/pam.d/common-auth - authentication settings common to all services
# here are the per-package modules (the "Primary" block)
auth	[success=1 default=ignore]	pam_unix.so nullok
# here's the fallback if no module succeeds
auth	requisite			pam_deny.so
auth	required			pam_permit.so
# and here are more per-package modules (the "Additional" block)
auth	required			pam_mamori.so
auth	optional			pam_cap.so 
# end of pam-auth-update config
`

func fsWith(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m["etc/pam.d/"+k] = &fstest.MapFile{Data: []byte(v), Mode: 0o644}
	}
	return m
}

func verdict(t *testing.T, files map[string]string, service string) (Verdict, *Stack) {
	t.Helper()
	st, err := LoadStack(fsWith(files), service)
	if err != nil {
		t.Fatal(err)
	}
	return Evaluate(st.Entries), st
}

func TestStackRule(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		required bool
		present  bool
		bypass   string // part of Bypass
	}{
		{"debian common-auth via @include", map[string]string{
			"login":       "auth optional pam_faildelay.so delay=3000000\nauth requisite pam_nologin.so\n@include common-auth\nauth optional pam_group.so\n",
			"common-auth": debianCommonAuth}, true, true, ""},
		{"absent", map[string]string{"login": "auth required pam_unix.so\n"}, false, false, ""},
		{"requisite", map[string]string{"login": "auth required pam_unix.so\nauth requisite pam_mamori.so\n"}, true, true, ""},
		{"bracket ok/die", map[string]string{"login": "auth required pam_unix.so\nauth [success=ok default=die] pam_mamori.so\n"}, true, true, ""},
		{"bracket default=bad only", map[string]string{"login": "auth required pam_unix.so\nauth [success=ok] pam_mamori.so\n"}, true, true, ""},
		{"sufficient mamori", map[string]string{"login": "auth required pam_unix.so\nauth sufficient pam_mamori.so\n"}, false, true, "_err→ignore"},
		{"optional mamori", map[string]string{"login": "auth required pam_unix.so\nauth optional pam_mamori.so\n"}, false, true, "pam_mamori.so"},
		{"sufficient before (su)", map[string]string{
			"su":          "auth sufficient pam_rootok.so\n@include common-auth\n",
			"common-auth": debianCommonAuth}, false, true, "pam_rootok.so success→done"},
		{"jump over", map[string]string{"login": "auth [success=1 default=ignore] pam_unix.so\nauth required pam_mamori.so\nauth required pam_permit.so\n"},
			false, true, "success→jump 1"},
		{"jump over a substack counts it as one", map[string]string{
			"login": "auth [success=1 default=bad] pam_unix.so\nauth substack mfa\nauth required pam_permit.so\n",
			"mfa":   "auth required pam_env.so\nauth required pam_mamori.so\n"}, false, true, "jump 1"},
		{"done in a substack ends only the substack", map[string]string{
			"login": "auth substack first\nauth required pam_mamori.so\n",
			"first": "auth sufficient pam_unix.so\nauth required pam_deny.so\n"}, true, true, ""},
		{"done after include ends everything", map[string]string{
			"login": "auth include first\nauth required pam_mamori.so\n",
			"first": "auth sufficient pam_unix.so\nauth required pam_deny.so\n"}, false, true, "pam_unix.so success→done"},
		{"ignore failure", map[string]string{"login": "auth required pam_unix.so\nauth [success=ok auth_err=ignore maxtries=ignore default=bad] pam_mamori.so\n"},
			false, true, "ignore"},
		{"reset after failure", map[string]string{"login": "auth required pam_unix.so\nauth required pam_mamori.so\nauth [default=reset] pam_env.so\nauth required pam_permit.so\n"},
			false, true, "reset"},
		{"dash line still required when present", map[string]string{"login": "auth required pam_unix.so\n-auth required pam_mamori.so\n"}, true, true, ""},
		{"continuation and comments", map[string]string{"login": "# c\nauth \\\n  required \\\n  pam_mamori.so # trailing\nauth sufficient pam_permit.so\n"}, true, true, ""},
		{"absolute module path", map[string]string{"login": "auth required /opt/x/pam_mamori.so socket=/run/x\n"}, true, true, ""},
		{"substack with die is only the substack", map[string]string{
			"login": "auth substack s\nauth required pam_mamori.so\n",
			"s":     "auth [success=done default=die] pam_unix.so\n"}, true, true, ""},
		// PAM_IGNORE taken as ok sets the status to PAM_IGNORE, which no
		// later success undoes: this stack lets nobody in (and so nobody
		// past pam_mamori.so either). Skipping IGNORE would find a way.
		{"ignore=ok sets the status, as in libpam", map[string]string{"login": "auth [ignore=ok default=die] pam_x.so\nauth sufficient pam_permit.so\nauth optional pam_mamori.so\n"},
			true, true, ""},
		{"a jump past the end fails the stack", map[string]string{"login": "auth [success=ok default=ignore] pam_unix.so\nauth [success=5 default=ignore] pam_permit.so\nauth required pam_mamori.so\n"},
			true, true, ""},
		{"a jump past the end of a substack fails it", map[string]string{
			"login": "auth substack s\nauth [success=ok default=bad] pam_permit.so\nauth optional pam_mamori.so\n",
			"s":     "auth [success=2 default=bad] pam_unix.so\nauth required pam_deny.so\n"}, true, true, ""},
		{"missing service uses other", map[string]string{"other": "auth required pam_mamori.so\n"}, true, true, ""},
	}
	t.Run("vendor directory /usr/lib/pam.d", func(t *testing.T) {
		fsys := fsWith(map[string]string{"login": "@include common-auth\n"})
		fsys["usr/lib/pam.d/common-auth"] = &fstest.MapFile{Data: []byte(debianCommonAuth)}
		st, err := LoadStack(fsys, "login")
		if err != nil || !Evaluate(st.Entries).Required || len(st.Problems) != 0 {
			t.Fatalf("%v %+v", err, st)
		}
		if _, err := LoadStack(fsWith(map[string]string{"login": ""}), "sshd"); err == nil {
			t.Fatal("no service file and no other: no error")
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := "login"
			if strings.HasPrefix(tt.name, "sufficient before") {
				svc = "su"
			}
			v, st := verdict(t, tt.files, svc)
			if v.Present != tt.present || v.Required != tt.required {
				t.Fatalf("got %+v; want present=%v required=%v\nentries %+v\nproblems %v", v, tt.present, tt.required, st.Entries, st.Problems)
			}
			if !strings.Contains(v.Bypass, tt.bypass) {
				t.Errorf("bypass %q does not mention %q", v.Bypass, tt.bypass)
			}
		})
	}
}
