package web

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// fallbackPath is where a refused redirect target leads instead.
const fallbackPath = "/fleet"

// maxRedirectLen bounds a redirect target (a console URL is far shorter).
const maxRedirectLen = 2048

// LocalPath returns p when it is a path on this site, else "/fleet". It
// is how every redirect target a request names (?next=, the sign-in
// form's next) is checked.
//
// p is parsed with url.Parse and must be a local path: no scheme, no
// host, no user, not opaque, starting with exactly one "/". Refused as
// well, in p and in its decoded path: a backslash (browsers read "/\host"
// as "//host"), a control character (browsers strip a tab or newline,
// so "/\t/host" becomes "//host"), invalid UTF-8, and "//" at the start.
func LocalPath(p string) string {
	if !isLocalPath(p) {
		return fallbackPath
	}
	return p
}

func isLocalPath(p string) bool {
	if p == "" || len(p) > maxRedirectLen || !strings.HasPrefix(p, "/") || hostile(p) {
		return false
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	// The decoded path: what a browser or a proxy may turn the escaped
	// one into.
	return strings.HasPrefix(u.Path, "/") && !hostile(u.Path)
}

// hostile: a string a browser might read as something other than a path
// on this origin.
func hostile(s string) bool {
	if !utf8.ValidString(s) || strings.HasPrefix(s, "//") || strings.ContainsRune(s, '\\') {
		return true
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			return true
		}
	}
	return false
}
