package mfa

import (
	"encoding/base32"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

var testSeed = base32.StdEncoding.EncodeToString([]byte("12345678901234567890")) // RFC 6238's SHA-1 seed, padded

func TestParseSeedCSV(t *testing.T) {
	ok := []struct {
		name  string
		in    string
		users []string
		lines []int
	}{
		{"header, spaces, lower case, padding", "Serial, User, Seed\nSN-1, tanaka , " + strings.ToLower(testSeed) + "\n", []string{"tanaka"}, []int{2}},
		{"no header, CRLF, blank lines, BOM", "\uFEFFSN-1,tanaka," + testSeed + "\r\n\r\nSN-2,suzuki,GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ\r\n",
			[]string{"tanaka", "suzuki"}, []int{1, 3}},
		{"dashes in a seed", "FT-00:12/3,sato,GEZDGNBV-GY3TQOJQ-GEZDGNBV-GY3TQOJQ", []string{"sato"}, []int{1}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := ParseSeedCSV([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(tc.users) {
				t.Fatalf("%d rows; want %d", len(rows), len(tc.users))
			}
			for i, r := range rows {
				if r.User != tc.users[i] || r.Line != tc.lines[i] || string(r.Seed) != "12345678901234567890" {
					t.Errorf("row %d: %s line %d seed %x", i, r.User, r.Line, []byte(r.Seed))
				}
			}
		})
	}
	bad := []struct {
		name, in string
		want     []string
	}{
		{"bad serial", "SN 1,tanaka," + testSeed, []string{"line 1", "serial"}},
		{"serial with a control character", "SN\x071,tanaka," + testSeed, []string{"line 1", `\a`}},
		{"long serial", strings.Repeat("S", 65) + ",tanaka," + testSeed, []string{"line 1", "serial"}},
		{"four fields", "SN-1,tanaka," + testSeed + ",x", []string{"line 1", "4 fields"}},
		{"seed too long", "SN-1,tanaka," + base32.StdEncoding.EncodeToString(make([]byte, 65)), []string{"520 bits"}},
		{"every bad row listed", "SN-1,A," + testSeed + "\nSN-2,tanaka,xyz\nSN-3,suzuki," + testSeed, []string{"line 1", "line 2"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := ParseSeedCSV([]byte(tc.in))
			var re RowErrors
			if !errors.As(err, &re) || rows != nil {
				t.Fatalf("got %v, %v; want RowErrors and no rows", rows, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testSeed[:16]) {
				t.Errorf("error echoes the seed: %q", err)
			}
		})
	}
	var many strings.Builder
	for i := range 50 {
		many.WriteString("SN-" + string(rune('a'+i%26)) + ",BAD,x\n")
	}
	_, err := ParseSeedCSV([]byte(many.String()))
	var re RowErrors
	if !errors.As(err, &re) || len(re) != maxRowErrors {
		t.Fatalf("50 bad rows: %d errors listed; want %d", len(re), maxRowErrors)
	}
}

// FuzzParseSeedCSV: the parser never panics, and what it accepts is
// sound: rows in file order with valid users and serials, seeds of 128 to
// 512 bits, no user or serial twice; a refusal holds no row and names at
// most 20 problems in valid UTF-8.
func FuzzParseSeedCSV(f *testing.F) {
	for _, s := range []string{
		"serial,user,seed\nSN-1,tanaka," + testSeed + "\n",
		"SN-1,tanaka," + testSeed + "\nSN-2,suzuki," + testSeed + "\n",
		"SN-1,tanaka,\"" + testSeed + "\"\r\n",
		"SN-1,\"ta\nnaka\"," + testSeed,
		"SN-1,tanaka,!!!\n",
		"\"unterminated,tanaka," + testSeed,
		"",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ParseSeedCSV(data)
		if err != nil {
			var re RowErrors
			if !errors.As(err, &re) || len(re) == 0 || len(re) > maxRowErrors || rows != nil {
				t.Fatalf("refusal %v with %d rows", err, len(rows))
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error is not UTF-8: %q", err)
			}
			return
		}
		users, serials, line := map[string]bool{}, map[string]bool{}, 0
		for _, r := range rows {
			if ValidUser(r.User) != nil || !serialRE.MatchString(r.Serial) || users[r.User] || serials[r.Serial] ||
				len(r.Seed) < MinSeedBytes || len(r.Seed) > MaxSeedBytes || r.Line <= line {
				t.Fatalf("accepted a bad row %+v", r)
			}
			users[r.User], serials[r.Serial], line = true, true, r.Line
		}
		if len(rows) == 0 || len(rows) > MaxSeedRows {
			t.Fatalf("accepted %d rows", len(rows))
		}
	})
}
