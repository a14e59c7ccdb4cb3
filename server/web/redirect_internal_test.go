package web

import (
	"net/url"
	"strings"
	"testing"
)

func TestLocalPath(t *testing.T) {
	long := "/" + strings.Repeat("a", maxRedirectLen)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "/fleet", "/fleet"},
		{"query", "/devices/x?tab=events#e", "/devices/x?tab=events#e"},
		{"escaped", "/search?q=%E4%BA%AC%E9%83%BD", "/search?q=%E4%BA%AC%E9%83%BD"},
		{"japanese", "/search?q=京都", "/search?q=京都"},
		{"empty", "", fallbackPath},
		{"relative", "fleet", fallbackPath},
		{"scheme", "https://evil.example/", fallbackPath},
		{"scheme-no-slashes", "https:evil.example", fallbackPath},
		{"javascript", "javascript:alert(1)", fallbackPath},
		{"protocol-relative", "//evil.example/x", fallbackPath},
		{"backslash", "/\\evil.example", fallbackPath},
		{"backslash-later", "/x\\y", fallbackPath},
		{"tab (issue 14)", "/\t/evil.example/x", fallbackPath},
		{"newline", "/\n/evil.example", fallbackPath},
		{"cr", "/\r/evil.example", fallbackPath},
		{"nul", "/\x00/evil.example", fallbackPath},
		{"del", "/\x7f/evil.example", fallbackPath},
		{"c1", "/\u0085/evil.example", fallbackPath},
		{"bidi", "/\u202e/x", fallbackPath},
		{"line separator", "/\u2028/x", fallbackPath},
		{"escaped tab", "/%09/evil.example/x", fallbackPath},
		{"escaped slash start", "/%2F/evil.example", fallbackPath},
		{"escaped backslash", "/%5Cevil.example", fallbackPath},
		{"bad escape", "/%zz", fallbackPath},
		{"invalid utf-8", "/\xff", fallbackPath},
		{"user", "/@evil.example", "/@evil.example"}, // a path, not a user
		{"too long", long, fallbackPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LocalPath(tc.in); got != tc.want {
				t.Errorf("LocalPath(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// browserish resolves p against origin roughly as a WHATWG URL parser
// does: tabs and newlines dropped, backslashes read as slashes, leading
// C0 controls and spaces trimmed.
func browserish(t *testing.T, origin *url.URL, p string) *url.URL {
	s := strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, p)
	s = strings.TrimLeft(s, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	u, err := url.Parse(s)
	if err != nil {
		return nil
	}
	return origin.ResolveReference(u)
}

// FuzzLocalPath: whatever the input, the answer is either the fallback
// or a target that a browser resolves to this origin.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/fleet", "//evil.example", "/\t/evil.example/x", "/\\x", "https://e.example", "/%09/x", "/a?b=c#d", "/\u202e"} {
		f.Add(s)
	}
	origin, _ := url.Parse("https://console.example:8443/")
	f.Fuzz(func(t *testing.T, p string) {
		got := LocalPath(p)
		if got == fallbackPath {
			return
		}
		if got != p {
			t.Fatalf("LocalPath(%q) = %q: accepted targets are kept as they are", p, got)
		}
		u := browserish(t, origin, got)
		if u == nil {
			t.Fatalf("accepted %q, which does not parse", got)
		}
		if u.Host != origin.Host || u.Scheme != origin.Scheme {
			t.Fatalf("accepted %q, which a browser resolves to %s", got, u)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r == '\\' {
				t.Fatalf("accepted %q with %q", got, r)
			}
		}
	})
}
