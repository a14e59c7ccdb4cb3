package ledger

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

func TestParseFiles(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []store.LedgerEntry
	}{
		{"testdata/ledger-utf8-bom.csv", []store.LedgerEntry{
			{AssetID: "A-001", Hostname: "pc-001", Serial: "SN001", Group: "市民課", Location: "本庁舎2F"},
			{AssetID: "A-002", Hostname: "pc-002", Group: "税務課", Location: "本庁舎3F", Note: "窓口, 予備"},
		}},
		{"testdata/ledger-cp932.csv", []store.LedgerEntry{
			{AssetID: "A-101", Hostname: "pc-101", Serial: "SN101", Group: "市民課", Location: "本庁舎1F", Note: "窓口"},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseRefusesWholeFile(t *testing.T) {
	for _, tc := range []struct {
		name, csv string
		rows      []int
		want      string
	}{
		{"unknown column", "asset_id,hostname,colour\nA,h,red\n", []int{1}, "unknown column"},
		{"no asset column", "hostname\nh\n", []int{1}, "no 資産番号"},
		{"bad rows, all reported", "asset_id,hostname,group\nA-1,pc-1,市民課\n,pc-2,\nA-3,<script>,\nA-1,pc-4,\nA-5,PC-1,\nA-6,pc 6,\n",
			[]int{3, 4, 5, 6, 7}, "is also on row 2"},
		{"field count", "asset_id,hostname\nA,h,extra\n", []int{2}, "3 fields"},
		{"header only", "asset_id,hostname\n", []int{2}, "header only"},
		{"broken quote", "asset_id,hostname\nA,\"h\n", []int{2}, "quote"},
		{"not text", "asset_id,hostname\nA,\xff\xfe\xfd\n", nil, "neither UTF-8 nor Shift_JIS"},
		{"too large", strings.Repeat("x", MaxBytes+1), nil, "at most"},
		{"control char", "asset_id,hostname,note\nA,h,a\x07b\n", []int{2}, "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.csv))
			var e *Errors
			if !errors.As(err, &e) || got != nil {
				t.Fatalf("Parse = %v, %v; want *Errors and nothing", got, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			var rows []int
			for _, r := range e.List {
				if r.Row > 0 && (len(rows) == 0 || rows[len(rows)-1] != r.Row) {
					rows = append(rows, r.Row)
				}
			}
			if tc.rows != nil {
				if diff := cmp.Diff(tc.rows, rows); diff != "" {
					t.Errorf("rows (-want +got)\n%s\n%v", diff, err)
				}
			}
		})
	}
}

func TestMatch(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	dev := func(id, host string, c mamoriv1.Compliance) store.Device {
		return store.Device{ID: id, Facts: &mamoriv1.DeviceFacts{Hostname: host}, LastSeen: now, Verdict: c.String()}
	}
	devs := []store.Device{
		dev("d1", "PC-001", mamoriv1.Compliance_COMPLIANCE_COMPLIANT),
		dev("d2", "pc-002", mamoriv1.Compliance_COMPLIANCE_OFFLINE),
		dev("d9", "stray", mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT),
		dev("d8", "old", mamoriv1.Compliance_COMPLIANCE_REVOKED),
	}
	entries := []store.LedgerEntry{{AssetID: "A-1", Hostname: "pc-001"}, {AssetID: "A-2", Hostname: "pc-002"}, {AssetID: "A-3", Hostname: "pc-003"}}
	rows := Match(entries, devs, func(d store.Device) mamoriv1.Compliance {
		return mamoriv1.Compliance(mamoriv1.Compliance_value[d.Verdict])
	})
	var got []string
	for _, r := range rows {
		got = append(got, r.Entry.Hostname+"="+r.State+"/"+r.DeviceID)
	}
	want := []string{"pc-001=enrolled/d1", "pc-002=offline/d2", "pc-003=never_enrolled/", "stray=not_in_ledger/d9"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	// A serial number wins over the host name: the terminal was renamed.
	renamed := dev("d5", "pc-renamed", mamoriv1.Compliance_COMPLIANCE_COMPLIANT)
	renamed.Facts.SerialNumber = "5CG1234XYZ"
	other := dev("d6", "pc-005", mamoriv1.Compliance_COMPLIANCE_COMPLIANT)
	rows = Match([]store.LedgerEntry{{AssetID: "A-5", Hostname: "pc-005", Serial: " 5cg1234xyz "}}, []store.Device{renamed, other},
		func(d store.Device) mamoriv1.Compliance {
			return mamoriv1.Compliance(mamoriv1.Compliance_value[d.Verdict])
		})
	got = nil
	for _, r := range rows {
		got = append(got, r.Entry.Hostname+"="+r.State+"/"+r.DeviceID)
	}
	want = []string{"pc-005=enrolled/d5", "pc-005=not_in_ledger/d6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serial match (-want +got)\n%s", diff)
	}
}

// FuzzParse: no input panics; what Parse accepts is bounded and valid.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/ledger-utf8-bom.csv", "testdata/ledger-cp932.csv"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("asset_id,hostname\nA,\"h\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := Parse(b)
		if err != nil {
			return
		}
		if len(es) == 0 || len(es) > MaxRows {
			t.Fatalf("%d entries accepted", len(es))
		}
		seen := map[string]bool{}
		for _, e := range es {
			if e.AssetID == "" || seen[e.AssetID] || (e.Hostname == "" && e.Serial == "") {
				t.Fatalf("accepted a bad entry %+v", e)
			}
			seen[e.AssetID] = true
		}
	})
}
