// Package i18n is mamori's message catalog: every text a person reads
// (mamorictl now; the agent, PAM prompts and the web console later) is a
// Message with an ID and both a Japanese and an English text.
//
// There is no global mutable state. The shared catalog is built once from
// an immutable table (see Default); a Printer binds a catalog to a language:
//
//	p := i18n.NewPrinter(i18n.LangFromEnv(os.Getenv))
//	fmt.Fprintln(stderr, p.Sprintf("ctl.err.no-server"))
//
// Both texts of a message take the same fmt verbs for the same arguments.
// Japanese word order may put arguments elsewhere; use explicit indexes
// ("%[2]s の %[1]d 件") when it does. TestCatalog checks every message.
package i18n

import (
	"strings"
)

// Lang is a language mamori speaks.
type Lang int

// The languages. English is the zero value and the fallback.
const (
	English Lang = iota
	Japanese
)

// String returns the BCP 47 tag: "en" or "ja".
func (l Lang) String() string {
	if l == Japanese {
		return "ja"
	}
	return "en"
}

// LangFromEnv picks the language from the POSIX locale variables: the first
// non-empty of LC_ALL, LC_MESSAGES and LANG. Japanese when it names Japanese
// ("ja", "ja_JP.UTF-8", "ja-JP"), English otherwise (including unset, "C"
// and "POSIX"). getenv is os.Getenv in production.
func LangFromEnv(getenv func(string) string) Lang {
	if getenv == nil {
		return English
	}
	for _, name := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if isJapanese(v) {
				return Japanese
			}
			return English
		}
	}
	return English
}

// isJapanese reports whether a locale name or language tag is Japanese:
// "ja" followed by nothing or by a separator ("_", "-", ".", "@").
func isJapanese(tag string) bool {
	if len(tag) < 2 || !strings.EqualFold(tag[:2], "ja") {
		return false
	}
	if len(tag) == 2 {
		return true
	}
	switch tag[2] {
	case '_', '-', '.', '@':
		return true
	}
	return false
}

// Limits that keep LangFromAcceptLanguage cheap on hostile headers.
const (
	maxAcceptLanguageLen    = 4096
	maxAcceptLanguageRanges = 64
)

// LangFromAcceptLanguage picks the language from an HTTP Accept-Language
// header (RFC 9110): the supported language with the highest q-value, the
// earlier one on a tie; q=0 means "not this one". Ranges mamori does not
// speak are skipped; "*" counts as English. Malformed ranges and q-values
// are ignored, never fatal; an empty or useless header means English.
func LangFromAcceptLanguage(header string) Lang {
	if len(header) > maxAcceptLanguageLen {
		header = header[:maxAcceptLanguageLen]
	}
	best, bestQ := English, -1
	for i, part := range strings.Split(header, ",") {
		if i >= maxAcceptLanguageRanges {
			break
		}
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.TrimSpace(tag)
		q, ok := parseQ(params)
		if !ok || q == 0 || tag == "" {
			continue
		}
		var lang Lang
		switch {
		case isJapanese(tag):
			lang = Japanese
		case tag == "*" || isEnglish(tag):
			lang = English
		default:
			continue
		}
		if q > bestQ {
			best, bestQ = lang, q
		}
	}
	return best
}

func isEnglish(tag string) bool {
	return len(tag) >= 2 && strings.EqualFold(tag[:2], "en") && (len(tag) == 2 || tag[2] == '-' || tag[2] == '_')
}

// parseQ reads the q parameter from ";"-separated parameters, as thousandths
// (0..1000). No q parameter means 1000. ok is false when q is malformed.
func parseQ(params string) (q int, ok bool) {
	q = 1000
	if params == "" {
		return q, true
	}
	for p := range strings.SplitSeq(params, ";") {
		k, v, found := strings.Cut(strings.TrimSpace(p), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		return parseQValue(strings.TrimSpace(v))
	}
	return q, true
}

// parseQValue parses "0", "0.5", "1", "1.000" (at most three decimals).
func parseQValue(v string) (int, bool) {
	if v == "" || len(v) > 5 {
		return 0, false
	}
	whole, frac, hasDot := strings.Cut(v, ".")
	if whole != "0" && whole != "1" {
		return 0, false
	}
	if hasDot && (frac == "" || len(frac) > 3) {
		return 0, false
	}
	n := 0
	for i := range 3 {
		n *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n += int(c - '0')
		}
	}
	if whole == "1" {
		if n != 0 {
			return 0, false
		}
		return 1000, true
	}
	return n, true
}
