package web

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLineDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\ni"
	b := "a\nb\nc\nd\nE\nf\ng\nh\ni\nj"
	got := withContext(lineDiff(a, b))
	var lines []string
	for _, l := range got {
		lines = append(lines, l.Op+l.Text)
	}
	want := []string{" …", " b", " c", " d", "-e", "+E", " f", " g", " h", " i", "+j"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if changed(lineDiff(a, a)) {
		t.Error("equal texts differ")
	}
	// Too large for the table: everything removed, everything added.
	big := strings.Repeat("x\n", 3000)
	if d := lineDiff(big, big+"y"); len(d) != 6002 {
		t.Errorf("large diff has %d lines", len(d))
	}
}

// TestLineDiffTrailingComma: a key added after the last one puts a comma
// on the line before; that line is not a change (issue #19).
func TestLineDiffTrailingComma(t *testing.T) {
	a := "{\n  \"agent\": {\n    \"mode\": \"MODE_ENFORCE\"\n  }\n}"
	b := "{\n  \"agent\": {\n    \"mode\": \"MODE_ENFORCE\",\n    \"required\": true\n  }\n}"
	var lines []string
	for _, l := range lineDiff(a, b) {
		lines = append(lines, l.Op+l.Text)
	}
	want := []string{" {", "   \"agent\": {", "     \"mode\": \"MODE_ENFORCE\",", "+    \"required\": true", "   }", " }"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
