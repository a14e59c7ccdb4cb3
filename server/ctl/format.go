package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/textsafe"
)

// sanitizeText makes text from the server safe to print on a terminal:
// invalid UTF-8, control characters (escape sequences) and bidirectional
// overrides become U+FFFD; tabs and line breaks become spaces.
func sanitizeText(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) || r == '\t' || r == '\n' || r == '\r' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r == utf8.RuneError || unsafeRune(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// unsafeRune: a control or bidi character from a terminal could move the
// cursor or disguise a value in the operator's terminal.
var unsafeRune = textsafe.IsHidden

// Column widths: a hostile or long value never pushes the table off the
// screen.
const (
	maxCell     = 40
	maxLastCell = 72
)

// table lays out rows by display width (a Japanese character is two
// columns), two spaces between columns, no trailing spaces.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	all := append([][]string{t.header}, t.rows...)
	ncol := len(t.header)
	cells := make([][]string, len(all))
	widths := make([]int, ncol)
	for i, row := range all {
		cells[i] = make([]string, ncol)
		for j := range ncol {
			var s string
			if j < len(row) {
				s = sanitizeText(row[j])
			}
			limit := maxCell
			if j == ncol-1 {
				limit = maxLastCell
			}
			s = i18n.Truncate(s, limit)
			cells[i][j] = s
			widths[j] = max(widths[j], i18n.Width(s))
		}
	}
	var b bytes.Buffer
	for _, row := range cells {
		var line strings.Builder
		for j, s := range row {
			if j > 0 {
				line.WriteString("  ")
			}
			if j < ncol-1 {
				s = i18n.PadRight(s, widths[j])
			}
			line.WriteString(s)
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// fields writes "label  value" lines with labels aligned by display width.
type fields struct {
	indent string
	rows   [][2]string
}

func (f *fields) add(label, value string) { f.rows = append(f.rows, [2]string{label, value}) }

func (f *fields) write(w io.Writer) error {
	wid := 0
	for _, r := range f.rows {
		wid = max(wid, i18n.Width(r[0]))
	}
	var b bytes.Buffer
	for _, r := range f.rows {
		line := f.indent + i18n.PadRight(r[0], wid) + "  " + sanitizeText(r[1])
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// localTime formats t for a table, in the operator's time zone; "-" when
// unset.
func (c *cli) localTime(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return "-"
	}
	return ts.AsTime().In(c.o.Location).Format("2006-01-02 15:04")
}

// ago formats how long ago ts was: "3m ago" / "3分前"; "-" when unset.
func (c *cli) ago(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return "-"
	}
	d := c.o.Now().Sub(ts.AsTime())
	if d < 0 {
		return c.p.Sprintf("ctl.time.in", c.span(-d))
	}
	if d < time.Minute {
		return c.p.Sprintf("ctl.time.just-now")
	}
	return c.p.Sprintf("ctl.time.ago", c.span(d))
}

// span is a short duration for people: 45s, 3m, 5h, 12d (秒/分/時間/日).
func (c *cli) span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return c.p.Sprintf("ctl.time.seconds", int(d/time.Second))
	case d < time.Hour:
		return c.p.Sprintf("ctl.time.minutes", int(d/time.Minute))
	case d < 48*time.Hour:
		return c.p.Sprintf("ctl.time.hours", int(d/time.Hour))
	default:
		return c.p.Sprintf("ctl.time.days", int(d/(24*time.Hour)))
	}
}

// keyValues renders a map as "k=v k=v", sorted by key.
func keyValues(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// protoJSON writes m as protojson with proto field names, every field
// present, indented two spaces, byte-for-byte stable (protojson itself
// varies whitespace on purpose; re-indenting removes that).
func protoJSON(w io.Writer, m proto.Message) error {
	return writeProtoJSON(w, m, true)
}

// writeProtoJSON is protoJSON; all=false leaves unset fields out (policy
// files, which people edit).
func writeProtoJSON(w io.Writer, m proto.Message, all bool) error {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: all}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// plainJSON writes one of mamorictl's own documented structs.
func plainJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
