// Package textsafe names the characters that let text from terminals
// (host names, user names, USB strings, summaries quoting them) disguise
// itself or break out of its line on a page, in a log, a mail header or a
// terminal: control characters (C0, DEL, C1) and the bidirectional
// formatting characters (embeddings, overrides, isolates and the marks).
package textsafe

import (
	"strings"
	"unicode"
)

// IsBidi reports whether r is a bidirectional formatting character:
// LRE/RLE/PDF/LRO/RLO (U+202A–U+202E), the isolates (U+2066–U+2069) and the
// marks LRM, RLM and ALM.
func IsBidi(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// IsHidden reports whether r is a control character or a bidi formatting
// character.
func IsHidden(r rune) bool { return unicode.IsControl(r) || IsBidi(r) }

// OneLine replaces every hidden character (IsHidden) with a space, so s
// stays one visible line (CR/LF cannot inject a header or a log line).
func OneLine(s string) string {
	if strings.IndexFunc(s, IsHidden) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if IsHidden(r) {
			return ' '
		}
		return r
	}, s)
}
