package facts

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"empty", "", map[string]string{}},
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
			map[string]string{"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian"}},
		{"single quotes", "NAME='Ubuntu'\n", map[string]string{"NAME": "Ubuntu"}},
		{"escapes", `NAME="a \"b\" \\ c \$d"`, map[string]string{"NAME": `a "b" \ c $d`}},
		{"comments and blanks", "# c\n\n  ID=x  \n", map[string]string{"ID": "x"}},
		{"crlf", "ID=x\r\nNAME=\"y\"\r\n", map[string]string{"ID": "x", "NAME": "y"}},
		{"unterminated quote skipped", "NAME=\"abc\nID=x\n", map[string]string{"ID": "x"}},
		{"bad key skipped", "lower=1\n1X=2\nA-B=3\nOK_1=4\n", map[string]string{"OK_1": "4"}},
		{"unquoted with space skipped", "NAME=a b\nID=z\n", map[string]string{"ID": "z"}},
		{"no equals", "garbage\n", map[string]string{}},
		{"empty value", "VARIANT=\n", map[string]string{"VARIANT": ""}},
		{"last wins", "ID=a\nID=b\n", map[string]string{"ID": "b"}},
		{"trailing backslash", `NAME="abc\"`, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseOSRelease([]byte(tt.in))); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"))
	f.Add([]byte(`NAME="a \"b\""` + "\n#x\nID='q'"))
	f.Add([]byte("A=\"\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := ParseOSRelease(b)
		for k := range m {
			if !validKey(k) {
				t.Fatalf("invalid key %q", k)
			}
		}
		v := clean(OSVersion(m))
		if !utf8.ValidString(v) || len(v) > maxFactLen || strings.ContainsAny(v, "\n\r") {
			t.Fatalf("unclean os_version %q", v)
		}
	})
}

func TestOSVersion(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want string
	}{
		{"pretty", map[string]string{"PRETTY_NAME": "P", "NAME": "N"}, "P"},
		{"name version", map[string]string{"NAME": "Rocky Linux", "VERSION": "9.3"}, "Rocky Linux 9.3"},
		{"name version_id", map[string]string{"NAME": "Alpine", "VERSION_ID": "3.19"}, "Alpine 3.19"},
		{"nothing", map[string]string{}, "Linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OSVersion(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMachineID(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"ok", "0123456789abcdef0123456789abcdef\n", "0123456789abcdef0123456789abcdef", false},
		{"upper", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef", false},
		{"short", "0123", "", true},
		{"not hex", "0123456789abcdef0123456789abcdeg", "", true},
		{"zeros", strings.Repeat("0", 32), "", true},
		{"uninitialized", "uninitialized", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMachineID([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %q, %v; want %q, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestWindowsVersion(t *testing.T) {
	tests := []struct {
		name, product, display, build string
		ubr                           uint64
		wantOS, wantKernel            string
	}{
		{"win10", "Windows 10 Pro", "22H2", "19045", 4170, "Windows 10 Pro 22H2", "19045.4170"},
		{"win11 reports 10", "Windows 10 Enterprise", "23H2", "22631", 3296, "Windows 11 Enterprise 23H2", "22631.3296"},
		{"no ubr", "Windows 10 Pro", "", "19045", 0, "Windows 10 Pro", "19045"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os, k := WindowsVersion(tt.product, tt.display, tt.build, tt.ubr)
			if os != tt.wantOS || k != tt.wantKernel {
				t.Errorf("got %q %q, want %q %q", os, k, tt.wantOS, tt.wantKernel)
			}
		})
	}
}

func TestClean(t *testing.T) {
	if got := clean("a\nb\x00c\xff"); got != "a b c\uFFFD" {
		t.Errorf("clean = %q", got)
	}
	long := strings.Repeat("あ", 200)
	if got := clean(long); len(got) > maxFactLen || !utf8.ValidString(got) {
		t.Errorf("clean long: %d bytes, valid=%v", len(got), utf8.ValidString(got))
	}
}

func TestParseSerial(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"PF3ABCDE\n", "PF3ABCDE"},
		{"To Be Filled By O.E.M.\n", ""},
		{"Default string", ""},
		{"  0 ", ""},
		{"", ""},
		{"VMware-56 4d 12", "VMware-56 4d 12"},
	} {
		if got := ParseSerial([]byte(tc.in)); got != tc.want {
			t.Errorf("ParseSerial(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrivilegedUsers(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/usr/sbin/nologin\n" +
		"tanaka:x:1000:1000::/home/tanaka:/bin/bash\nadm1:x:1001:27::/home/adm1:/bin/bash\n" +
		"broken line\n:x:0:0::/:/bin/sh\n+nis:x:0:0::/:\n" + strings.Repeat("a", 40) + ":x:0:0::/:\n"
	group := "root:x:0:\nsudo:x:27:sato, ito\nwheel:x:10:suzuki\nusers:x:100:tanaka\nadmin:x:115:\nbad\nsudo:x:27\n"
	got := PrivilegedUsers([]byte(passwd), []byte(group))
	want := []string{"adm1", "ito", "root", "sato", "suzuki", "toor"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v want %v", got, want)
	}
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "u%03d:x:0:0::/:/bin/sh\n", i)
	}
	if n := len(PrivilegedUsers([]byte(many.String()), nil)); n != MaxPrivilegedUsers {
		t.Fatalf("%d users, want the bound %d", n, MaxPrivilegedUsers)
	}
	if len(PrivilegedUsers(nil, []byte("sudo:x:27:\x00\xff,ok"))) != 1 {
		t.Fatal("hostile group line")
	}
}

func FuzzPrivilegedUsers(f *testing.F) {
	f.Add([]byte("root:x:0:0::/:\n"), []byte("sudo:x:27:a,b\n"))
	f.Fuzz(func(t *testing.T, passwd, group []byte) {
		out := PrivilegedUsers(passwd, group)
		if len(out) > MaxPrivilegedUsers {
			t.Fatal(len(out))
		}
		for _, u := range out {
			if !validLogin(u) {
				t.Fatalf("%q", u)
			}
		}
	})
}
