package i18n

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestLangFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Lang
	}{
		{"unset", nil, English},
		{"LANG ja", map[string]string{"LANG": "ja_JP.UTF-8"}, Japanese},
		{"LANG bare ja", map[string]string{"LANG": "ja"}, Japanese},
		{"LANG ja eucJP", map[string]string{"LANG": "ja_JP.eucJP"}, Japanese},
		{"LANG en", map[string]string{"LANG": "en_US.UTF-8"}, English},
		{"LANG C", map[string]string{"LANG": "C.UTF-8"}, English},
		{"LANG javanese is not Japanese", map[string]string{"LANG": "jv_ID"}, English},
		{"LANG jam is not Japanese", map[string]string{"LANG": "jam"}, English},
		{"LC_MESSAGES over LANG", map[string]string{"LANG": "en_US.UTF-8", "LC_MESSAGES": "ja_JP.UTF-8"}, Japanese},
		{"LC_ALL over all", map[string]string{"LANG": "ja_JP.UTF-8", "LC_MESSAGES": "ja_JP.UTF-8", "LC_ALL": "C"}, English},
		{"LC_ALL ja", map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "ja_JP.UTF-8"}, Japanese},
		{"empty LC_ALL falls through", map[string]string{"LC_ALL": "", "LANG": "ja_JP.UTF-8"}, Japanese},
		{"upper case", map[string]string{"LANG": "JA_JP"}, Japanese},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LangFromEnv(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("LangFromEnv(%v) = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
	if got := LangFromEnv(nil); got != English {
		t.Errorf("LangFromEnv(nil) = %v, want en", got)
	}
}

func TestLangFromAcceptLanguage(t *testing.T) {
	tests := []struct {
		header string
		want   Lang
	}{
		{"", English},
		{"ja", Japanese},
		{"ja-JP", Japanese},
		{"ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", Japanese},
		{"en-US,en;q=0.9,ja;q=0.8", English},
		{"en;q=0.5, ja;q=0.8", Japanese},
		{"ja;q=0, en", English},
		{"ja;q=0", English},
		{"fr-FR, ja;q=0.3", Japanese},
		{"fr-FR, de", English},
		{"*;q=0.5, ja;q=0.4", English},
		{"ja;q=1.5", English},           // malformed q: ignored
		{"ja;q=abc, en;q=0.1", English}, // malformed q: ignored
		{"ja ; q = 0.7 , en;q=0.6", Japanese},
		{"ja;level=1", Japanese},
		{"JA-jp", Japanese},
		{"jv, ja;q=0.1", Japanese},
		{"en, ja", English}, // a tie: the first wins
		{";;;,,,=q", English},
		{strings.Repeat("x,", 5000) + "ja", English}, // beyond the limits
	}
	for _, tt := range tests {
		name := tt.header
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			if got := LangFromAcceptLanguage(tt.header); got != tt.want {
				t.Errorf("LangFromAcceptLanguage(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func FuzzLangFromAcceptLanguage(f *testing.F) {
	for _, s := range []string{"", "ja", "en-US,en;q=0.9,ja;q=0.8", "ja;q=0", "*", "ja;q=0.999", "ja;q=1.", ",;=", "\xff\xfe", "ja;q=0.5;q=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got := LangFromAcceptLanguage(header)
		if got != English && got != Japanese {
			t.Fatalf("LangFromAcceptLanguage(%q) = %d", header, got)
		}
		if again := LangFromAcceptLanguage(header); again != got {
			t.Fatalf("not deterministic: %v then %v", got, again)
		}
		// Japanese only when the header names Japanese somewhere.
		if got == Japanese && !strings.Contains(strings.ToLower(header), "ja") {
			t.Fatalf("LangFromAcceptLanguage(%q) = ja without naming ja", header)
		}
		// An explicit top preference for Japanese in front wins.
		if len(header) < maxAcceptLanguageLen-10 {
			if LangFromAcceptLanguage("ja;q=1,"+header) != Japanese {
				t.Fatalf("ja;q=1 in front of %q lost", header)
			}
		}
	})
}

func TestCatalog(t *testing.T) {
	c := Default()
	msgs := c.Messages()
	if len(msgs) == 0 {
		t.Fatal("empty catalog")
	}
	for _, m := range msgs {
		if err := Check(m); err != nil {
			t.Error(err)
		}
		for _, s := range []string{m.En, m.Ja} {
			if !utf8.ValidString(s) {
				t.Errorf("message %q: invalid UTF-8", m.ID)
			}
		}
	}
}

func TestNewCatalogRejects(t *testing.T) {
	tests := []struct {
		name string
		msgs []Message
		want string
	}{
		{"duplicate", []Message{{"a", "x", "x"}, {"a", "y", "y"}}, "defined twice"},
		{"no Japanese", []Message{{"a", "x", ""}}, "both"},
		{"no English", []Message{{"a", " ", "x"}}, "both"},
		{"empty ID", []Message{{"", "x", "x"}}, "empty ID"},
		{"verb differs", []Message{{"a", "%d items", "%s 件"}}, "verbs differ"},
		{"verb missing", []Message{{"a", "%s and %s", "%s"}}, "verbs differ"},
		{"lone percent", []Message{{"a", "100%", "100%"}}, "lone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCatalog(tt.msgs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewCatalog error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestVerbs(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"plain", nil},
		{"100%% done", nil},
		{"%s and %d", []string{"1:s", "2:d"}},
		{"%[2]d 件の %[1]s", []string{"1:s", "2:d"}},
		{"%-10s|%5.2f|%+v|%#x", []string{"1:s", "2:f", "3:v", "4:x"}},
		{"%q %v", []string{"1:q", "2:v"}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			got, err := Verbs(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Verbs(%q) (-want +got):\n%s", tt.format, diff)
			}
		})
	}
}

func TestPrinter(t *testing.T) {
	c, err := NewCatalog(Message{"n", "%d devices on %s", "%[2]s に %[1]d 台"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Printer(English).Sprintf("n", 3, "pc"), "3 devices on pc"; got != want {
		t.Errorf("en = %q, want %q", got, want)
	}
	if got, want := c.Printer(Japanese).Sprintf("n", 3, "pc"), "pc に 3 台"; got != want {
		t.Errorf("ja = %q, want %q", got, want)
	}
	if got, want := c.Printer(Japanese).Sprintf("missing", 1), "[missing] 1"; got != want {
		t.Errorf("missing = %q, want %q", got, want)
	}
}

func TestWidth(t *testing.T) {
	tests := []struct {
		s    string
		want int
	}{
		{"", 0},
		{"abc", 3},
		{"端末", 4},
		{"ホスト名", 8},
		{"ｶﾅ", 2},      // half-width katakana
		{"ＡＢ", 4},      // full-width Latin
		{"e\u0301", 1}, // combining accent
		{"a\x1bb", 2},
		{"\xff", 1}, // invalid UTF-8 shows as one U+FFFD
	}
	for _, tt := range tests {
		if got := Width(tt.s); got != tt.want {
			t.Errorf("Width(%q) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func TestTruncateAndPad(t *testing.T) {
	tests := []struct {
		s    string
		w    int
		want string
	}{
		{"hostname", 10, "hostname"},
		{"hostname", 5, "host…"},
		{"端末名前", 5, "端末…"},
		{"端末名前", 6, "端末…"},
		{"端末名前", 8, "端末名前"},
		{"abc", 0, ""},
	}
	for _, tt := range tests {
		got := Truncate(tt.s, tt.w)
		if got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.s, tt.w, got, tt.want)
		}
		if Width(got) > tt.w {
			t.Errorf("Truncate(%q, %d) is %d wide", tt.s, tt.w, Width(got))
		}
	}
	if got := PadRight("端末", 6); got != "端末  " {
		t.Errorf("PadRight = %q", got)
	}
}

// Every detail message takes only %s arguments, the same number in both
// languages: the agent sends its arguments as text, and a hostile or
// mismatched argument must never break the formatting on the server.
func TestDetailMessages(t *testing.T) {
	n := 0
	for _, m := range Default().Messages() {
		if !strings.HasPrefix(string(m.ID), "detail.") {
			continue
		}
		n++
		en, err := Verbs(m.En)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		ja, err := Verbs(m.Ja)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		if len(en) != len(ja) {
			t.Errorf("%s: %d arguments in English, %d in Japanese", m.ID, len(en), len(ja))
		}
		for _, v := range append(en, ja...) {
			if !strings.HasSuffix(v, ":s") {
				t.Errorf("%s: verb %s is not %%s", m.ID, v)
			}
		}
		// Arguments are numbered 1..n with none skipped.
		for i, v := range en {
			if want := strconv.Itoa(i+1) + ":s"; v != want {
				t.Errorf("%s: argument %d is %s, want %s", m.ID, i+1, v, want)
			}
		}
		if got := DetailArgs(m); got != len(en) {
			t.Errorf("DetailArgs(%s) = %d, want %d", m.ID, got, len(en))
		}
	}
	if n == 0 {
		t.Fatal("no detail.* messages")
	}
}

func TestPrinterDetail(t *testing.T) {
	args := []string{"/etc/udev/rules.d/60-mamori.rules"}
	tests := []struct {
		name   string
		lang   Lang
		id     ID
		args   []string
		want   string
		wantOK bool
	}{
		{"ja", Japanese, "detail.media.udev-missing", args, "udev ルール /etc/udev/rules.d/60-mamori.rules がありません", true},
		{"en", English, "detail.media.udev-missing", args, "udev rule /etc/udev/rules.d/60-mamori.rules missing", true},
		{"no args", Japanese, "detail.media.udev-ok", nil, "udev ルールは正常です", true},
		{"unknown", Japanese, "detail.from-a-newer-agent", nil, "", false},
		{"not a detail", Japanese, "console.none", nil, "", false},
		{"empty", Japanese, "", nil, "", false},
		{"too few args", Japanese, "detail.media.udev-missing", nil, "", false},
		{"too many args", Japanese, "detail.media.udev-missing", []string{"a", "b"}, "", false},
		{"hostile arg is text", English, "detail.media.udev-masked", []string{"%!s(MISSING) %d %[9]s"}, "udev rule masked by %!s(MISSING) %d %[9]s: remove that file", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NewPrinter(tt.lang).Detail(tt.id, tt.args)
			if ok != tt.wantOK || !strings.Contains(got, tt.want) {
				t.Errorf("Detail(%q, %q) = %q, %v; want %q, %v", tt.id, tt.args, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
