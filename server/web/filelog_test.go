package web_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/url"
	"strings"
	"testing"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestEvidenceFileLog: the evidence report and its CSV list, under clause
// 6(3)①, every file written to removable media under an exception and
// every note that records were lost, with hostile names escaped and
// neutralised, per group, in Japanese and English; a helpdesk operator
// cannot read it.
func TestEvidenceFileLog(t *testing.T) {
	e := start(t)
	file := func(path, sha string, extra map[string]string) map[string]string {
		a := map[string]string{"exception_id": "x-42", "vendor": "0781", "product": "5581", "serial": "4C53000", "device": "sdb",
			"mount_point": "/media/usb", "path": path, "size_bytes": "5", "hashed_bytes": "5", "sha256": sha,
			"uid": "1000", "user": "tanaka", "pid": "4242", "process": "cp"}
		for k, v := range extra {
			a[k] = v
		}
		return a
	}
	const hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	a := e.device(t, "zeimu-pc-01", healthy(),
		mediaEvent("media_file_written", file("/住民/課税台帳.xlsx", hello, nil)),
		mediaEvent("media_file_written", file("/"+formula+hostile+bidi, hello, map[string]string{"capped": "true", "hashed_bytes": "67108864", "size_bytes": "99999999999"})),
		mediaEvent("media_file_events_dropped", map[string]string{"count": "3", "overflow": "true"}),
		mediaEvent("usb_blocked", map[string]string{"serial": "NOT-A-FILE"}))
	e.device(t, "shimin-pc-01", healthy(),
		mediaEvent("media_file_written", file("/other.txt", hello, map[string]string{"hash_error": "read: input/output error", "sha256": ""})))
	if _, err := e.h.Srv.Store().SetDeviceGroup(context.Background(), a.ID, "税務課"); err != nil {
		t.Fatal(err)
	}

	// The device page shows its files from the file log, not from the
	// recent events: 60 later events do not push them off.
	var noise []*mamoriv1.Event
	for range 60 {
		noise = append(noise, mediaEvent("usb_blocked", map[string]string{"serial": "NOISE"}))
	}
	if _, err := a.Client.Report(context.Background(), &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{healthy()}, Events: noise, PolicyVersion: 1}); err != nil {
		t.Fatal(err)
	}

	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	if p := hd.get("/evidence/report?" + e.period()); p.status != 403 || strings.Contains(p.body, "課税台帳") {
		t.Errorf("helpdesk reads the report: %d", p.status)
	}

	if dp := hd.get("/devices/" + a.ID); !strings.Contains(dp.body, `id="exception-files"`) || !strings.Contains(dp.body, "path: /住民/課税台帳.xlsx") {
		t.Errorf("device page without its files after 60 other events:\n%s", dp.body)
	}

	b := e.browser(t, "ja")
	b.signIn(e.officer)
	p := b.get("/evidence/report?" + e.period())
	if p.status != 200 {
		t.Fatalf("report: %d\n%s", p.status, p.body)
	}
	section := p.body[strings.Index(p.body, `id="file-log-title"`):]
	for _, want := range []string{
		"例外措置のもとで外部記憶媒体に書き込まれたファイル (6(3)①)", "/住民/課税台帳.xlsx", hello, "tanaka (1000)", "cp (4242)",
		"<code>x-42</code>", "0781:5581 4C53000 (sdb)", "zeimu-pc-01", "shimin-pc-01", "税務課",
		"先頭 67108864 バイトのみの SHA-256", "ハッシュ未計算: read: input/output error",
		"この端末のファイル記録が少なくとも 3 件失われました", "ファイル 3 件、失われたと報告された記録 3 件、破損した記録 0 件",
		"&lt;script&gt;", "[U&#43;202E]",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("file log section lacks %q", want)
		}
	}
	for _, raw := range []string{"<script>", "<img", "\u202E", "NOT-A-FILE"} {
		if strings.Contains(section, raw) {
			t.Errorf("file log section contains %q", raw)
		}
	}
	if !strings.Contains(section, `id="report-end"`) {
		t.Error("the report does not end after the file log")
	}

	// One group: only its terminal's files.
	g := b.get("/evidence/report?" + e.period() + "&group=" + url.QueryEscape("税務課"))
	if gs := g.body[strings.Index(g.body, `id="file-log-title"`):]; !strings.Contains(gs, "課税台帳") || strings.Contains(gs, "other.txt") ||
		!strings.Contains(gs, "ファイル 2 件") {
		t.Errorf("group report's file log:\n%s", gs)
	}

	// English.
	en := e.browser(t, "en")
	en.signIn(e.officer)
	if p := en.get("/evidence/report?" + e.period()); !strings.Contains(p.body, "Files written to removable media under an exception (6(3)①)") ||
		!strings.Contains(p.body, "at least 3 records of this terminal&#39;s file log were lost") || !strings.Contains(p.body, "3 files; 3 records reported lost; 0 damaged records") {
		t.Errorf("English file log section:\n%s", p.body[strings.Index(p.body, `id="file-log-title"`):])
	}

	// The CSV: a section after the terminals, every file a row, formula
	// cells neutralised.
	c := b.get("/evidence/export.csv?" + e.period())
	r := csv.NewReader(bytes.NewReader([]byte(strings.TrimPrefix(c.body, "\ufeff"))))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v", err)
	}
	start := -1
	for i, rec := range recs {
		if len(rec) == 2 && rec[0] == "例外措置のもとで外部記憶媒体に書き込まれたファイル" && rec[1] == "6(3)①" {
			start = i
		}
	}
	if start < 0 || len(recs) < start+6 {
		t.Fatalf("CSV without the file log section:\n%s", c.body)
	}
	rows := recs[start+2 : len(recs)-1]
	if len(rows) != 4 {
		t.Fatalf("CSV file log: %d rows, want 4 (3 files, 1 loss):\n%q", len(rows), rows)
	}
	var paths []string
	for _, row := range rows {
		if len(row) != 13 {
			t.Fatalf("CSV row of %d cells: %q", len(row), row)
		}
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("formula cell %q", cell)
			}
		}
		paths = append(paths, row[7])
	}
	if paths[0] != "/住民/課税台帳.xlsx" || !strings.HasPrefix(paths[1], "/"+formula) || !strings.Contains(paths[1], "[U+202E]") {
		t.Errorf("CSV paths: %q", paths)
	}
	if last := recs[len(recs)-1]; last[0] != "ファイル 3 件、失われたと報告された記録 3 件、破損した記録 0 件" {
		t.Errorf("CSV totals: %q", last)
	}
	if !e.hasAudit(t, e.officer.opID, "evidence.export", "csv") {
		t.Error("CSV export not audited")
	}
}
