// Package ledger reads the asset ledger (端末台帳) an officer imports as a
// CSV file and matches it against the enrolled devices. Parse is a pure
// function over bytes; it validates every row and refuses the whole file
// with the row numbers of every problem, so nothing is half-imported.
package ledger

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"

	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/server/store"
)

// Limits of one import.
const (
	MaxBytes      = 2 << 20 // fits one gRPC message with room to spare
	MaxRows       = 20000
	MaxFieldChars = 256
	// MaxErrors is how many row problems one answer lists.
	MaxErrors = 50
)

// Column names, Japanese or English, as the header row names them.
var columns = map[string]string{
	"資産番号": "asset_id", "asset_id": "asset_id", "asset id": "asset_id",
	"ホスト名": "hostname", "hostname": "hostname", "host": "hostname",
	"製造番号": "serial", "シリアル番号": "serial", "serial": "serial",
	"所属": "group", "部署": "group", "group": "group", "department": "group",
	"設置場所": "location", "location": "location",
	"備考": "note", "note": "note",
}

var (
	assetRE    = regexp.MustCompile(`^[\p{L}\p{N}._/#-]{1,64}$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)
	serialRE   = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// RowError is one problem, at a 1-based line of the file (the header is
// line 1).
type RowError struct {
	Row int
	Msg string
}

// Errors is every problem Parse found (at most MaxErrors listed).
type Errors struct {
	List []RowError
	More int // problems found beyond the list
}

func (e *Errors) Error() string {
	var b strings.Builder
	for i, r := range e.List {
		if i > 0 {
			b.WriteString("; ")
		}
		if r.Row > 0 {
			fmt.Fprintf(&b, "row %d: %s", r.Row, r.Msg)
		} else {
			b.WriteString(r.Msg)
		}
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "; and %d more", e.More)
	}
	return b.String()
}

func (e *Errors) add(row int, format string, a ...any) {
	if len(e.List) >= MaxErrors {
		e.More++
		return
	}
	e.List = append(e.List, RowError{Row: row, Msg: fmt.Sprintf(format, a...)})
}

// Decode turns the file into UTF-8: a UTF-8 BOM is dropped; a file that is
// not UTF-8 is read as Shift_JIS (CP932, what Excel in Japanese saves).
func Decode(b []byte) (string, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if utf8.Valid(b) {
		return string(b), nil
	}
	s, err := japanese.ShiftJIS.NewDecoder().Bytes(b)
	if err != nil || bytes.ContainsRune(s, utf8.RuneError) {
		return "", errors.New("the file is neither UTF-8 nor Shift_JIS (CP932): save it as CSV UTF-8 or CSV from Excel")
	}
	return string(s), nil
}

// Parse reads a ledger CSV: a header row naming the columns (資産番号,
// ホスト名, 製造番号, 所属, 設置場所, 備考 or asset_id, hostname, serial,
// group, location, note; any order; asset_id and hostname or serial
// required), then one terminal per row. Every row is checked; any problem
// refuses the whole file with an *Errors.
func Parse(b []byte) ([]store.LedgerEntry, error) {
	if len(b) > MaxBytes {
		return nil, &Errors{List: []RowError{{Msg: fmt.Sprintf("the file is %d bytes; at most %d", len(b), MaxBytes)}}}
	}
	text, err := Decode(b)
	if err != nil {
		return nil, &Errors{List: []RowError{{Msg: err.Error()}}}
	}
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	errs := &Errors{}
	header, err := r.Read()
	if err != nil {
		if err == io.EOF {
			err = errors.New("the file is empty: a header row is needed")
		}
		return nil, &Errors{List: []RowError{{Row: 1, Msg: err.Error()}}}
	}
	idx := map[string]int{}
	for i, h := range header {
		name, ok := columns[strings.ToLower(strings.TrimSpace(h))]
		if !ok {
			errs.add(1, "unknown column %q: use 資産番号, ホスト名, 製造番号, 所属, 設置場所, 備考", clip(h))
			continue
		}
		if _, dup := idx[name]; dup {
			errs.add(1, "column %q appears twice", clip(h))
		}
		idx[name] = i
	}
	if _, ok := idx["asset_id"]; !ok {
		errs.add(1, "the header has no 資産番号 (asset_id) column")
	}
	_, hasHost := idx["hostname"]
	_, hasSerial := idx["serial"]
	if !hasHost && !hasSerial {
		errs.add(1, "the header has neither ホスト名 (hostname) nor 製造番号 (serial)")
	}
	if len(errs.List) > 0 {
		return nil, errs
	}
	var out []store.LedgerEntry
	assets := map[string]int{}
	hosts := map[string]int{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			errs.add(line, "%v", err)
			break // the reader cannot resync reliably after a quoting error
		}
		line, _ := r.FieldPos(0) // FieldPos only after a successful Read
		if len(out) >= MaxRows {
			errs.add(line, "more than %d rows", MaxRows)
			break
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if len(rec) != len(header) {
			errs.add(line, "%d fields; the header has %d", len(rec), len(header))
			continue
		}
		get := func(name string) string {
			if i, ok := idx[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		e := store.LedgerEntry{AssetID: get("asset_id"), Hostname: get("hostname"), Serial: get("serial"),
			Group: get("group"), Location: get("location"), Note: get("note")}
		ok := true
		bad := func(format string, a ...any) { errs.add(line, format, a...); ok = false }
		switch {
		case e.AssetID == "":
			bad("資産番号 (asset ID) is empty")
		case !assetRE.MatchString(e.AssetID):
			bad("資産番号 %q: letters, digits and . _ / # - only, at most 64", clip(e.AssetID))
		case assets[e.AssetID] > 0:
			bad("資産番号 %q is also on row %d", e.AssetID, assets[e.AssetID])
		}
		if e.Hostname == "" && e.Serial == "" {
			bad("neither ホスト名 (hostname) nor 製造番号 (serial) is given")
		}
		if e.Hostname != "" {
			key := strings.ToLower(e.Hostname)
			switch {
			case !hostnameRE.MatchString(e.Hostname):
				bad("ホスト名 %q is not a host name (letters, digits, . _ -)", clip(e.Hostname))
			case hosts[key] > 0:
				bad("ホスト名 %q is also on row %d", e.Hostname, hosts[key])
			default:
				hosts[key] = line
			}
		}
		if e.Serial != "" && !serialRE.MatchString(e.Serial) {
			bad("製造番号 %q: printable ASCII without spaces, at most 128", clip(e.Serial))
		}
		if e.Group != "" {
			if err := policy.CheckGroupName(e.Group); err != nil {
				bad("所属: %v", err)
			}
		}
		for _, f := range []struct{ name, v string }{{"設置場所", e.Location}, {"備考", e.Note}} {
			if n := utf8.RuneCountInString(f.v); n > MaxFieldChars {
				bad("%s is %d characters; at most %d", f.name, n, MaxFieldChars)
			}
			if strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
				bad("%s contains a control character", f.name)
			}
		}
		if e.AssetID != "" && assets[e.AssetID] == 0 {
			assets[e.AssetID] = line
		}
		if ok {
			out = append(out, e)
		}
	}
	if len(errs.List) > 0 {
		return nil, errs
	}
	if len(out) == 0 {
		return nil, &Errors{List: []RowError{{Row: 2, Msg: "no terminals: the file has a header only"}}}
	}
	return out, nil
}

func clip(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		return string([]rune(s)[:40]) + "…"
	}
	return s
}
