package web

import (
	"net/url"
	"strconv"
	"testing"
)

// FuzzParseDeviceList: any query string either is refused or reads into
// a query whose own encoding reads back the same (the links the list
// builds for its pages, sorting and CSV say what the page shows).
func FuzzParseDeviceList(f *testing.F) {
	for _, s := range []string{"", "state=offline", "group=-&sort=group&desc=1&page=2", "os=%3Cscript%3E",
		"page=0", "agent=%00", "state=noncompliant&sort=failing_since&page=1000000", "desc=0&desc=1",
		"after=dev-1&page=3", "before=dev-2&page=2&desc=1", "after=a&before=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		v, ok := parseDeviceList(q)
		if !ok {
			return
		}
		q2, err := url.ParseQuery(v.Encode())
		if err != nil {
			t.Fatalf("encoding %+v: %v", v, err)
		}
		v2, ok := parseDeviceList(q2)
		if !ok || v2 != v {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v (%v)", raw, v, v.Encode(), v2, ok)
		}
	})
}

// FuzzParseAuditQuery: any query either is refused or reads into filters
// whose encoding (with the page's cursor, as the pager's links carry it)
// reads back the same.
func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"", "actor=%E4%BD%90%E8%97%A4&action=policy", "from=2026-11-01&to=2026-11-30", "device=pc-01", "from=2026-02-30", "to=%ff",
		"before=12&action=console", "before=0", "before=-5", "before=99999999999999999999"} {
		f.Add(s)
	}
	c := &Console{cfg: DefaultConfig()}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		v, ok := c.parseAuditQuery(q)
		if !ok {
			return
		}
		var kv []string
		if v.Before > 0 {
			kv = []string{"before", strconv.FormatInt(v.Before, 10)}
		}
		q2, _ := url.ParseQuery(v.encode(kv...))
		v2, ok := c.parseAuditQuery(q2)
		if !ok || v2 != v {
			t.Fatalf("round trip of %q: %+v -> %+v (%v)", raw, v, v2, ok)
		}
	})
}
