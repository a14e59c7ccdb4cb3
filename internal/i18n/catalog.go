package i18n

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// ID names a message, e.g. "ctl.err.no-server". IDs are stable: a message
// whose meaning changes gets a new ID.
type ID string

// Message is one text in both languages. En and Ja are fmt formats that take
// the same verbs for the same arguments.
type Message struct {
	ID ID
	En string
	Ja string
}

// Text returns the format for lang.
func (m Message) Text(lang Lang) string {
	if lang == Japanese {
		return m.Ja
	}
	return m.En
}

// Catalog is an immutable set of messages.
type Catalog struct {
	byID map[ID]Message
}

// NewCatalog builds a catalog and checks it: every ID unique and non-empty,
// both texts present, the same format verbs in both.
func NewCatalog(msgs ...Message) (*Catalog, error) {
	c := &Catalog{byID: make(map[ID]Message, len(msgs))}
	var errs []error
	for _, m := range msgs {
		if _, dup := c.byID[m.ID]; dup {
			errs = append(errs, fmt.Errorf("message %q defined twice", m.ID))
			continue
		}
		if err := Check(m); err != nil {
			errs = append(errs, err)
		}
		c.byID[m.ID] = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Lookup returns the message with id.
func (c *Catalog) Lookup(id ID) (Message, bool) {
	m, ok := c.byID[id]
	return m, ok
}

// Messages returns every message, sorted by ID.
func (c *Catalog) Messages() []Message {
	out := make([]Message, 0, len(c.byID))
	for _, m := range c.byID {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Printer formats messages of one catalog in one language.
func (c *Catalog) Printer(lang Lang) *Printer { return &Printer{cat: c, lang: lang} }

// Default returns mamori's shared catalog (the messages in messages*.go),
// built once. It panics if that table is inconsistent, which TestCatalog
// rules out before any release.
var Default = sync.OnceValue(func() *Catalog {
	c, err := NewCatalog(slices.Concat(ctlMessages, mfaCtlMessages, serverMessages, agentMessages, consoleMessages, policyMessages, policyFormMessages, evidenceMessages, consoleMFAMessages, consoleListMessages, detailMessages, eventKindMessages, incidentMessages)...)
	if err != nil {
		panic("i18n: " + err.Error())
	}
	return c
})

// NewPrinter returns a Printer of the Default catalog for lang.
func NewPrinter(lang Lang) *Printer { return Default().Printer(lang) }

// Printer formats messages in one language. Its methods are safe for
// concurrent use.
type Printer struct {
	cat  *Catalog
	lang Lang
}

// Lang is the printer's language.
func (p *Printer) Lang() Lang { return p.lang }

// Sprintf formats message id with args. An unknown ID is formatted as
// "[id] args…" rather than failing, so a missing message is visible but
// never hides the information; tests keep that from happening.
func (p *Printer) Sprintf(id ID, args ...any) string {
	m, ok := p.cat.Lookup(id)
	if !ok {
		s := "[" + string(id) + "]"
		for _, a := range args {
			s += " " + fmt.Sprint(a)
		}
		return s
	}
	return fmt.Sprintf(m.Text(p.lang), args...)
}

// Check reports whether a message is complete: an ID, both texts, and the
// same format verbs for the same arguments in both.
func Check(m Message) error {
	if m.ID == "" {
		return fmt.Errorf("message with empty ID (en %q)", m.En)
	}
	if strings.TrimSpace(m.En) == "" || strings.TrimSpace(m.Ja) == "" {
		return fmt.Errorf("message %q: both an English and a Japanese text are required", m.ID)
	}
	en, err := Verbs(m.En)
	if err != nil {
		return fmt.Errorf("message %q (en): %w", m.ID, err)
	}
	ja, err := Verbs(m.Ja)
	if err != nil {
		return fmt.Errorf("message %q (ja): %w", m.ID, err)
	}
	if !slices.Equal(en, ja) {
		return fmt.Errorf("message %q: format verbs differ: en %v, ja %v", m.ID, en, ja)
	}
	return nil
}

// Verbs lists the fmt verbs of format by argument, as "1:s", "2:d", sorted
// by argument number, so that two formats that consume the same arguments
// the same way give equal lists even when they order them differently.
// Flags, width and precision do not matter; "%%" is not a verb.
func Verbs(format string) ([]string, error) {
	var out []string
	arg := 1
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i >= len(format) {
			return nil, errors.New("format ends with a lone %")
		}
		if format[i] == '%' {
			continue
		}
		for i < len(format) && strings.IndexByte("+-# 0", format[i]) >= 0 {
			i++
		}
		// Explicit argument index, width and precision, in any mix.
		for i < len(format) {
			c := format[i]
			switch {
			case c == '[':
				end := strings.IndexByte(format[i:], ']')
				if end < 0 {
					return nil, errors.New("unclosed [ in format")
				}
				n := 0
				for _, d := range format[i+1 : i+end] {
					if d < '0' || d > '9' {
						return nil, fmt.Errorf("bad argument index %q", format[i:i+end+1])
					}
					n = n*10 + int(d-'0')
				}
				if n == 0 {
					return nil, fmt.Errorf("bad argument index %q", format[i:i+end+1])
				}
				arg = n
				i += end + 1
			case c == '*':
				return nil, errors.New("* width or precision is not allowed in messages")
			case c == '.' || (c >= '0' && c <= '9'):
				i++
			default:
				goto verb
			}
		}
	verb:
		if i >= len(format) {
			return nil, errors.New("format ends inside a verb")
		}
		out = append(out, fmt.Sprintf("%d:%c", arg, format[i]))
		arg++
	}
	sort.Strings(out)
	return out, nil
}

// Lookup is message id in the printer's language, and whether the
// catalog has it (for names a caller shows as identifiers otherwise).
func (p *Printer) Lookup(id ID) (string, bool) {
	m, ok := p.cat.Lookup(id)
	if !ok {
		return "", false
	}
	return m.Text(p.lang), true
}
