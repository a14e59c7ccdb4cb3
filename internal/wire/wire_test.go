package wire

import (
	"strings"
	"testing"
	"unicode/utf8"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// fits is the server's rule (server/api validate.go) for a map.
func fits(t *testing.T, m map[string]string) {
	t.Helper()
	if len(m) > MaxMapEntries {
		t.Fatalf("%d entries", len(m))
	}
	for k, v := range m {
		if k == "" || len(k) > MaxShortString || len(v) > MaxLongString || !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Fatalf("entry %q=%q (%d, %d bytes) does not fit", k[:min(len(k), 20)], v[:min(len(v), 20)], len(k), len(v))
		}
	}
}

func TestMap(t *testing.T) {
	small := map[string]string{"a": "b"}
	if got := Map(small); len(got) != 1 || got["a"] != "b" {
		t.Fatalf("a map that fits changed: %v", got)
	}
	big := map[string]string{}
	for i := range 100 {
		big[strings.Repeat("k", 300)+string(rune('A'+i%26))+strings.Repeat("x", i)] = strings.Repeat("v", 5000)
	}
	big["a-ok"] = "日本語" + strings.Repeat("語", 2000) // a multi-byte rune at the cut
	big["a-bad"] = "\xff\xfe"
	got := Map(big)
	fits(t, got)
	if !strings.Contains(got[TruncatedKey], "entries_dropped=") || got["a-bad"] != "\uFFFD" {
		t.Fatalf("truncation not said, or invalid UTF-8 kept: %q %q", got[TruncatedKey], got["a-bad"])
	}
	if v := got["a-ok"]; !strings.HasSuffix(v, "…") || !utf8.ValidString(v) {
		t.Fatalf("long value not cut on a rune boundary with a mark: %q", v[len(v)-10:])
	}
}

func TestEventAndStatus(t *testing.T) {
	e := &mamoriv1.Event{Control: strings.Repeat("c", 1000), Kind: "k\xff", Attributes: map[string]string{"": "x"}}
	Event(e)
	if len(e.Control) > MaxShortString || !utf8.ValidString(e.Kind) {
		t.Fatalf("event: %d %q", len(e.Control), e.Kind)
	}
	fits(t, e.Attributes)
	s := &mamoriv1.ControlStatus{Control: "media", Detail: strings.Repeat("d", 10000), Evidence: map[string]string{"model": strings.Repeat("m", 9000)}}
	Status(s)
	if len(s.Detail) > MaxLongString {
		t.Fatalf("detail %d bytes", len(s.Detail))
	}
	fits(t, s.Evidence)
}

func TestStatusDetailArgs(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		args     []string
		wantID   string
		wantArgs int
	}{
		{"fits", "detail.media.udev-missing", []string{"/etc/udev/rules.d/x"}, "detail.media.udev-missing", 1},
		{"id too long", "detail." + strings.Repeat("x", 300), []string{"a"}, "", 0},
		{"id not UTF-8", "detail.\xff", nil, "", 0},
		{"too many args", "detail.x", make([]string, MaxDetailArgs+1), "", 0},
		{"most args", "detail.x", make([]string, MaxDetailArgs), "detail.x", MaxDetailArgs},
		{"long and invalid args", "detail.x", []string{strings.Repeat("語", 3000), "\xff<script>"}, "detail.x", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &mamoriv1.ControlStatus{Control: "media", Detail: "english", DetailId: tt.id, DetailArgs: tt.args}
			Status(s)
			if s.DetailId != tt.wantID || len(s.DetailArgs) != tt.wantArgs {
				t.Fatalf("id %q with %d args, want %q with %d", s.DetailId, len(s.DetailArgs), tt.wantID, tt.wantArgs)
			}
			if s.Detail != "english" {
				t.Fatalf("detail changed: %q", s.Detail)
			}
			// The server's rule (server/api validate.go).
			if len(s.DetailId) > MaxShortString || !utf8.ValidString(s.DetailId) {
				t.Fatalf("detail_id does not fit: %q", s.DetailId)
			}
			for _, a := range s.DetailArgs {
				if len(a) > MaxLongString || !utf8.ValidString(a) {
					t.Fatalf("detail_arg does not fit: %d bytes", len(a))
				}
			}
		})
	}
}

// Status keeps parts that fit (clipping their arguments) and drops them all
// when one does not fit or there are too many: the English detail stays.
func TestStatusDetailParts(t *testing.T) {
	part := func(id string, args ...string) *mamoriv1.DetailPart { return &mamoriv1.DetailPart{Id: id, Args: args} }
	many := make([]*mamoriv1.DetailPart, MaxDetailParts+1)
	for i := range many {
		many[i] = part("detail.x")
	}
	for _, tt := range []struct {
		name  string
		id    string
		parts []*mamoriv1.DetailPart
		want  int
	}{
		{"fit", "detail.problems", []*mamoriv1.DetailPart{part("detail.a", strings.Repeat("語", 3000)), part("detail.b")}, 2},
		{"most", "detail.problems", many[:MaxDetailParts], MaxDetailParts},
		{"too many", "detail.problems", many, 0},
		{"one bad id", "detail.problems", []*mamoriv1.DetailPart{part("detail.a"), part("detail." + strings.Repeat("x", 300))}, 0},
		{"one with too many args", "detail.problems", []*mamoriv1.DetailPart{part("detail.a", make([]string, MaxDetailArgs+1)...)}, 0},
		{"parts without an id", "", []*mamoriv1.DetailPart{part("detail.a")}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &mamoriv1.ControlStatus{Control: "isolation", Detail: "english", DetailId: tt.id, DetailArgs: []string{"2", "a; b"},
				DetailParts: tt.parts}
			Status(s)
			if len(s.DetailParts) != tt.want || s.Detail != "english" {
				t.Fatalf("%d parts (detail %q), want %d", len(s.DetailParts), s.Detail, tt.want)
			}
			for _, p := range s.DetailParts {
				for _, a := range p.Args {
					if len(a) > MaxLongString || !utf8.ValidString(a) {
						t.Fatalf("part argument does not fit: %d bytes", len(a))
					}
				}
			}
		})
	}
}

// FuzzMap: whatever an agent's control puts in a map, Map makes it fit.
func FuzzMap(f *testing.F) {
	f.Add("key", "value", 3)
	f.Add("", "\xff", 70)
	f.Add(strings.Repeat("k", 300), strings.Repeat("語", 2000), 1)
	f.Fuzz(func(t *testing.T, k, v string, n int) {
		n = min(max(n, 0), 200)
		m := map[string]string{k: v}
		for i := range n {
			m[k+strings.Repeat("+", i)] = v + v
		}
		fits(t, Map(m))
		if got := Short(k); len(got) > MaxShortString || !utf8.ValidString(got) {
			t.Fatalf("Short(%q) = %q", k, got)
		}
	})
}
