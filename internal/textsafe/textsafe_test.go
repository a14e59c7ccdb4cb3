package textsafe

import "testing"

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                                       "",
		"pc-01 市民課":                              "pc-01 市民課",
		"a\r\nSubject: x":                        "a  Subject: x",
		"tab\there\x00nul\x7fdel\u0085nel":       "tab here nul del nel",
		"evil\u202egpj.exe":                      "evil gpj.exe",
		"\u2066iso\u2069 \u200emark\u200f\u061c": " iso   mark  ",
		"ok\u200bzero-width":                     "ok\u200bzero-width", // not a bidi or control character
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzOneLine(f *testing.F) {
	f.Add("a\r\nb\u202ec")
	f.Fuzz(func(t *testing.T, s string) {
		out := OneLine(s)
		for _, r := range out {
			if IsHidden(r) {
				t.Fatalf("OneLine(%q) kept %U", s, r)
			}
		}
		if len([]rune(out)) != len([]rune(s)) {
			t.Fatalf("OneLine(%q) changed the length: %q", s, out)
		}
	})
}
