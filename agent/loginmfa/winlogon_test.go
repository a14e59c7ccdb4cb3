package loginmfa

import (
	"os"
	"strings"
	"testing"
	"time"
)

// event4624 is the fixture (a real-shaped 4624 of an interactive logon,
// as EvtRender gives it) with substitutions old→new applied.
func event4624(t testing.TB, subst ...string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/events/4624-interactive.xml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(subst); i += 2 {
		if !strings.Contains(s, subst[i]) {
			t.Fatalf("fixture has no %q", subst[i])
		}
		s = strings.Replace(s, subst[i], subst[i+1], 1)
	}
	return []byte(s)
}

func TestParseLogonEvent(t *testing.T) {
	l, err := ParseLogonEvent(event4624(t))
	if err != nil {
		t.Fatal(err)
	}
	want := WinLogon{RecordID: 48213, At: time.Date(2026, 12, 7, 9, 12, 3, 486720700, time.UTC), User: "tanaka", Domain: "CITY",
		SID: "S-1-5-21-3623811015-3361044348-30300820-1013", LogonType: 2, Process: "User32", Workstation: "MN-PC01", IP: "127.0.0.1"}
	if l != want {
		t.Errorf("got  %+v\nwant %+v", l, want)
	}
	if !l.ThroughLogonUI() {
		t.Error("an interactive User32 logon of a user account: want ThroughLogonUI")
	}
}

// TestThroughLogonUI: which 4624s mamori's provider would have seen.
func TestThroughLogonUI(t *testing.T) {
	for _, tc := range []struct {
		name  string
		subst []string
		want  bool
	}{
		{"interactive", nil, true},
		{"unlock", []string{">2</Data>", ">7</Data>"}, true},
		{"RDP", []string{">2</Data>", ">10</Data>"}, true},
		{"cached interactive", []string{">2</Data>", ">11</Data>"}, true},
		{"cached unlock", []string{">2</Data>", ">13</Data>"}, true},
		{"network (SMB)", []string{">2</Data>", ">3</Data>", "User32 ", "NtLmSsp "}, false},
		{"service", []string{">2</Data>", ">5</Data>", "User32 ", "Advapi  "}, false},
		{"runas", []string{"User32 ", "seclogo"}, false},
		{"Desktop Window Manager", []string{"S-1-5-21-3623811015-3361044348-30300820-1013", "S-1-5-90-0-1", ">tanaka<", ">DWM-1<"}, false},
		{"SYSTEM", []string{"S-1-5-21-3623811015-3361044348-30300820-1013", "S-1-5-18"}, false},
		{"elevated half of a split token", []string{"'TargetLinkedLogonId'>0x0", "'TargetLinkedLogonId'>0x2f5a1b0", "'ElevatedToken'>%%1843", "'ElevatedToken'>%%1842"}, false},
		{"non-elevated half", []string{"'TargetLinkedLogonId'>0x0", "'TargetLinkedLogonId'>0x2f5a1b0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseLogonEvent(event4624(t, tc.subst...))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.ThroughLogonUI(); got != tc.want {
				t.Errorf("ThroughLogonUI = %v, want %v (%+v)", got, tc.want, l)
			}
		})
	}
}

// TestParseLogonEventHostile: malformed, oversized and hostile input is
// an error, never a panic or a logon.
func TestParseLogonEventHostile(t *testing.T) {
	ok := string(event4624(t))
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
		strings.Replace(ok, ">tanaka<", ">&lol2;<", 1)
	external := `<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///C:/ProgramData/mamori/key.pem">]>` +
		strings.Replace(ok, ">tanaka<", ">&x;<", 1)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not XML", []byte("4624 tanaka")},
		{"truncated", []byte(ok[:len(ok)/2])},
		{"other event", event4624(t, "<EventID>4624<", "<EventID>4625<")},
		{"no record ID", event4624(t, "<EventRecordID>48213<", "<EventRecordID><")},
		{"record ID zero", event4624(t, "<EventRecordID>48213<", "<EventRecordID>0<")},
		{"record ID negative", event4624(t, "<EventRecordID>48213<", "<EventRecordID>-1<")},
		{"record ID overflow", event4624(t, "<EventRecordID>48213<", "<EventRecordID>184467440737095516160<")},
		{"no time", event4624(t, "SystemTime='2026-12-07T09:12:03.4867207Z'", "SystemTime='yesterday'")},
		{"no user", event4624(t, ">tanaka<", "><")},
		{"user is a dash", event4624(t, ">tanaka<", ">-<")},
		{"no logon type", event4624(t, ">2</Data>", ">two</Data>")},
		{"logon type out of range", event4624(t, ">2</Data>", ">4294967298</Data>")},
		{"user twice", event4624(t, "<Data Name='TargetDomainName'>", "<Data Name='TargetUserName'>root</Data><Data Name='TargetDomainName'>")},
		{"control character", event4624(t, ">tanaka<", ">tana&#x1b;[2Jka<")},
		{"newline in user", event4624(t, ">tanaka<", ">tanaka&#10;root<")},
		{"user of 257 bytes", event4624(t, ">tanaka<", ">"+strings.Repeat("u", 257)+"<")},
		{"invalid UTF-8", event4624(t, ">tanaka<", ">tana\xffka<")},
		{"oversized", []byte(strings.Replace(ok, "<Security/>", "<Security/>"+strings.Repeat("<x/>", MaxLogonEventXML/4), 1))},
		{"two events", []byte(ok + ok)},
		{"trailing text", []byte(ok + "tail")},
		{"deep nesting", []byte(strings.Repeat("<Event>", 20000) + strings.Repeat("</Event>", 20000))},
		{"entity expansion", []byte(laughs)},
		{"external entity", []byte(external)},
		{"unknown entity", event4624(t, ">tanaka<", ">&ent;<")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseLogonEvent(tc.in)
			if err == nil {
				t.Fatalf("parsed: %+v", l)
			}
		})
	}
}

// FuzzParseLogonEvent: no panic; what parses is a bounded 4624 with a
// user, a record ID and no control character in any field.
func FuzzParseLogonEvent(f *testing.F) {
	f.Add(event4624(f))
	f.Add(event4624(f, ">2</Data>", ">7</Data>"))
	f.Add(event4624(f, "'ElevatedToken'>%%1843", "'ElevatedToken'>%%1842", "'TargetLinkedLogonId'>0x0", "'TargetLinkedLogonId'>0x1"))
	f.Add([]byte(`<Event><System><EventID>4624</EventID><EventRecordID>1</EventRecordID><TimeCreated SystemTime='2026-01-01T00:00:00Z'/></System><EventData><Data Name='TargetUserName'>a</Data><Data Name='LogonType'>2</Data></EventData></Event>`))
	f.Add([]byte(`<!DOCTYPE e [<!ENTITY x "y">]><Event>&x;</Event>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLogonEvent(b)
		if err != nil {
			return
		}
		if len(b) > MaxLogonEventXML || l.RecordID == 0 || l.User == "" || l.At.IsZero() {
			t.Fatalf("accepted %+v from %d bytes", l, len(b))
		}
		for _, s := range []string{l.User, l.Domain, l.SID, l.Process, l.Workstation, l.IP} {
			if len(s) > maxLogonField {
				t.Fatalf("field of %d bytes", len(s))
			}
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", s)
				}
			}
		}
	})
}
