package mfa

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/totp"
)

// Limits of a seed import.
const (
	MaxSeedCSV   = 1 << 20 // bytes
	MaxSeedRows  = 10000
	MinSeedBytes = 16 // RFC 4226 R6: at least 128 bits
	MaxSeedBytes = 64
	// maxRowErrors is how many row errors one refusal lists.
	maxRowErrors = 20
)

// SeedRow is one hardware token from an import file.
type SeedRow struct {
	// Line is the row's line number in the file (1-based), for errors.
	Line   int
	Serial string
	User   string
	Seed   totp.Secret
}

// RowErrors refuses an import: every row at fault (up to 20), by line.
// No message holds a seed.
type RowErrors []string

func (e RowErrors) Error() string {
	return "the import file was refused, nothing was imported: " + strings.Join(e, "; ")
}

var serialRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$`)

// ParseSeedCSV reads hardware-token seeds: one "serial,user,base32 seed"
// row per token, an optional header row ("serial,user,seed"), blank lines
// ignored. It checks every row — serial, login name, seed of 128 to 512
// bits, no user or serial twice — and returns every row or a RowErrors
// naming each bad row; never a part.
func ParseSeedCSV(data []byte) ([]SeedRow, error) {
	if len(data) > MaxSeedCSV {
		return nil, RowErrors{fmt.Sprintf("the file is %d bytes; at most %d (split it)", len(data), MaxSeedCSV)}
	}
	if !utf8.Valid(data) {
		return nil, RowErrors{"the file is not UTF-8 text"}
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // a BOM from spreadsheet programs
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	var (
		rows    []SeedRow
		errs    RowErrors
		users   = map[string]int{}
		serials = map[string]int{}
		first   = true
	)
	fail := func(line int, format string, args ...any) {
		if len(errs) < maxRowErrors {
			errs = append(errs, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fail(pe.Line, "not CSV: %v", pe.Err)
			} else {
				errs = append(errs, "not CSV")
			}
			// The reader cannot resync reliably after a quoting error.
			break
		}
		line, _ := r.FieldPos(0) // only valid after a record was read

		isHeader := first && len(rec) >= 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "serial")
		first = false
		if isHeader {
			continue
		}
		if len(rows)+len(errs) >= MaxSeedRows {
			fail(line, "more than %d rows (split the file)", MaxSeedRows)
			break
		}
		if len(rec) != 3 {
			fail(line, "%d fields; want 3 (serial,user,seed)", len(rec))
			continue
		}
		serial, user := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		ok := true
		if !serialRE.MatchString(serial) {
			fail(line, "serial %q: use 1 to 64 letters, digits or . _ : / -", clip(serial))
			ok = false
		}
		if err := ValidUser(user); err != nil {
			fail(line, "user %q: use a login name (lower-case letters, digits, '_', '.', '-'; at most 32)", clip(user))
			ok = false
		}
		seed, err := totp.ParseBase32(strings.ReplaceAll(rec[2], "-", ""))
		switch {
		case err != nil:
			fail(line, "the seed is not base32")
			ok = false
		case len(seed) < MinSeedBytes || len(seed) > MaxSeedBytes:
			fail(line, "the seed is %d bits; want %d to %d", len(seed)*8, MinSeedBytes*8, MaxSeedBytes*8)
			ok = false
		}
		if prev, dup := users[user]; ok && dup {
			fail(line, "user %s is also on line %d", user, prev)
			ok = false
		}
		if prev, dup := serials[serial]; ok && dup {
			fail(line, "serial %s is also on line %d", serial, prev)
			ok = false
		}
		if !ok {
			continue
		}
		users[user], serials[serial] = line, line
		rows = append(rows, SeedRow{Line: line, Serial: serial, User: user, Seed: seed})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(rows) == 0 {
		return nil, RowErrors{"no rows: write one token per line as serial,user,base32 seed"}
	}
	return rows, nil
}

// clip keeps a hostile value short in an error (%q escapes the rest).
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
