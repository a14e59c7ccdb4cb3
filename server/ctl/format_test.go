package ctl

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/internal/i18n"
)

// Proto3 refuses invalid UTF-8 on the wire, so a broken hostname cannot
// reach mamorictl through gRPC; the table must survive it anyway (the same
// code will render text from other sources).
func TestTableHostileCells(t *testing.T) {
	tb := &table{header: []string{"ID", "ホスト名", "状態"}}
	tb.add("1", "pc-\xff\xfe-bad", "準拠")
	tb.add("2", "端末\x1b[2J\u202e\t改行\nあり", "非準拠")
	tb.add("3", strings.Repeat("長", 100), "x")
	var b bytes.Buffer
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !utf8.ValidString(out) || strings.ContainsAny(out, "\x1b\u202e\t") {
		t.Fatalf("unsafe output:\n%q", out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4 (a newline in a cell must not add a line):\n%s", len(lines), out)
	}
	// The third column starts at the same display column on every line.
	var starts []int
	for _, l := range lines {
		i := strings.LastIndex(l, "  ")
		starts = append(starts, i18n.Width(l[:i+2]))
	}
	for _, s := range starts[1:] {
		if s != starts[0] {
			t.Errorf("columns misaligned (display columns %v):\n%s", starts, out)
			break
		}
	}
	if w := i18n.Width(strings.Split(lines[3], "  ")[1]); w > maxCell {
		t.Errorf("long cell is %d columns wide, limit %d", w, maxCell)
	}
}

func TestSanitizeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"窓口端末", "窓口端末"},
		{"a\x1b[31mb", "a\ufffd[31mb"},
		{"bad\xffutf8", "bad\ufffdutf8"},
		{"tab\tnew\nline", "tab new line"},
		{"rtl\u202eoverride", "rtl\ufffdoverride"},
		{"c1\u009bcontrol", "c1\ufffdcontrol"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, sanitizeText(tt.in)); diff != "" {
			t.Errorf("sanitizeText(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// Every message ID written in this package exists in the catalog, and
// every computed one (states, flags, help) too.
func TestMessagesExist(t *testing.T) {
	cat := i18n.Default()
	for _, name := range []string{"ENFORCED", "MONITORING", "DEGRADED", "FAILED", "NOT_APPLICABLE"} {
		id := i18n.ID("ctl.state." + strings.ToLower(name))
		if _, ok := cat.Lookup(id); !ok {
			t.Errorf("no message %s", id)
		}
	}
	for _, cmd := range commands {
		if cmd != "help" {
			if _, ok := cat.Lookup(helpID(cmd)); !ok {
				t.Errorf("no message %s", helpID(cmd))
			}
		}
		id := i18n.ID("ctl.summary." + strings.ReplaceAll(cmd, " ", "-"))
		if _, ok := cat.Lookup(id); !ok {
			t.Errorf("no message %s", id)
		}
	}
	msgIDPattern := regexp.MustCompile(`"(ctl\.[a-z0-9._-]+)"`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgIDPattern.FindAllStringSubmatch(string(src), -1) {
			id := m[1]
			if strings.HasSuffix(id, ".") {
				continue // a prefix, checked above
			}
			if _, ok := cat.Lookup(i18n.ID(id)); !ok {
				t.Errorf("%s uses message %q, which the catalog lacks", f, id)
			}
		}
	}
}
