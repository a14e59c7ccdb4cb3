package localapi

import (
	"testing"
	"time"
)

func TestNormalizeCode(t *testing.T) {
	for in, want := range map[string]string{
		"８８７６８７":         "887687",
		"887　687":        "887 687",
		"ＡＢＣＤ－ＥＦＧＨ":      "ABCD-EFGH",
		"123456":         "123456",
		"":               "",
		"\u2460\u2461":   "12", // circled digits: NFKC makes them digits too
		"ｶﾞ":             "ガ",
		"\xff\xfe bytes": "\xff\xfe bytes", // not UTF-8: left as it is
	} {
		if got := NormalizeCode(in); got != want {
			t.Errorf("NormalizeCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOwnLimiter(t *testing.T) {
	var l ownLimiter
	now := time.Unix(1_800_000_000, 0)
	for i := range OwnUserBurst {
		if !l.allow(1000, now) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if l.allow(1000, now) {
		t.Fatal("attempt past the burst allowed")
	}
	if !l.allow(1001, now) {
		t.Fatal("another uid was limited")
	}
	if !l.allow(1000, now.Add(OwnUserRate)) || l.allow(1000, now.Add(OwnUserRate)) {
		t.Fatal("one attempt per OwnUserRate after the burst")
	}
	// Bounded: many uids never grow the table past its limit.
	for uid := range uint32(2 * maxLimitedUIDs) {
		l.allow(10_000+uid, now)
	}
	if len(l.b) > maxLimitedUIDs {
		t.Fatalf("%d buckets", len(l.b))
	}
	// Once the old buckets are full again they are forgotten.
	if !l.allow(99_999_999, now.Add(OwnUserBurst*OwnUserRate)) {
		t.Fatal("a new uid refused after the table refilled")
	}
}
