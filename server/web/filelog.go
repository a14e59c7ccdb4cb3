package web

import (
	"context"
	"encoding/csv"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/store"
)

// The evidence report's file log section (clause 6(3)①): every file an
// agent saw written to removable media while an exception made the device
// writable (agent/media's fanotify file log, event media_file_written),
// and every note that records were lost (media_file_events_dropped), so
// the report says what left the terminal and where its list is not
// complete. Records are selected by when the server received them
// (store.FileLogFilter says why) and streamed a page at a time.

const fileLogPage = 500 // records per page of the stream

// fileRecord is one row of the section; every string from the agent has
// been through visible (and safeCell for the CSV).
type fileRecord struct {
	Received, Written time.Time
	Hostname          string
	DeviceID          string
	Group             string
	// Lost is set for a "records were lost" note: how many, and whether
	// the kernel's queue overflowed (then the count is a lower bound).
	Lost     string
	Overflow bool
	// Damaged: the stored record does not decode (seq says which).
	Damaged bool
	Seq     int64

	ExceptionID string
	Medium      string // vendor:product serial (device node)
	Path        string // on the medium, from its mount point
	MountPoint  string
	Size        string // bytes
	SHA256      string
	HashNote    string // capped at N bytes, or why there is no hash
	User        string // login user (uid), or "" for a service
	Process     string // name (pid)
}

// fileLogTotals closes the section: what it listed.
type fileLogTotals struct {
	Files, LostNotes, Damaged int
	LostRecords               int64
	Overflow                  bool
}

func (t *fileLogTotals) add(page []fileRecord) {
	for _, r := range page {
		switch {
		case r.Damaged:
			t.Damaged++
		case r.Lost != "":
			t.LostNotes++
			n, _ := strconv.ParseInt(r.Lost, 10, 64)
			t.LostRecords += max(n, 0)
			t.Overflow = t.Overflow || r.Overflow
		default:
			t.Files++
		}
	}
}

// fileLogStream hands the period's file log to emit a page at a time.
// Host names come from the devices table (a terminal's current name),
// looked up once per device for the whole report.
func (c *Console) fileLogStream(ctx context.Context, p *i18n.Printer, from, to time.Time, group string, emit func([]fileRecord) error) error {
	hosts := map[string]store.Device{}
	f := store.FileLogFilter{From: from, To: to, Group: group, Limit: fileLogPage}
	for {
		evs, err := c.st.ListFileLog(ctx, f)
		if err != nil {
			return err
		}
		page := make([]fileRecord, 0, len(evs))
		for _, e := range evs {
			d, ok := hosts[e.DeviceID]
			if !ok {
				if len(hosts) > 10000 {
					clear(hosts) // bounded, whatever the fleet
				}
				if d, err = c.st.GetDevice(ctx, e.DeviceID); err != nil {
					return err
				}
				hosts[e.DeviceID] = d
			}
			page = append(page, fileRecordOf(p, e, d))
		}
		if len(page) > 0 {
			if err := emit(page); err != nil {
				return err
			}
		}
		if len(evs) < fileLogPage {
			return nil
		}
		last := evs[len(evs)-1]
		f.After = store.FileLogCursor{ReceivedAt: last.ReceivedAt, Seq: last.Seq}
	}
}

func fileRecordOf(p *i18n.Printer, e store.StoredEvent, d store.Device) fileRecord {
	a := e.Event.GetAttributes()
	r := fileRecord{Received: e.ReceivedAt, Hostname: visible(d.Facts.GetHostname()), DeviceID: e.DeviceID,
		Group: visible(d.Group), Seq: e.Seq}
	if t := e.Event.GetTime(); t.IsValid() {
		r.Written = t.AsTime()
	}
	switch e.Event.GetKind() {
	case "undecodable":
		r.Damaged = true
		return r
	case "media_file_events_dropped":
		r.Lost = visible(a["count"])
		r.Overflow = a["overflow"] == "true"
		return r
	}
	r.ExceptionID, r.Path, r.MountPoint = visible(a["exception_id"]), visible(a["path"]), visible(a["mount_point"])
	r.Medium = visible(strings.TrimSpace(a["vendor"] + ":" + a["product"] + " " + a["serial"]))
	if a["device"] != "" {
		r.Medium += " (" + visible(a["device"]) + ")"
	}
	r.Size, r.SHA256 = visible(a["size_bytes"]), visible(a["sha256"])
	switch {
	case a["hash_error"] != "":
		r.HashNote = p.Sprintf("console.filelog.hash-error", visible(a["hash_error"]))
	case a["capped"] == "true":
		r.HashNote = p.Sprintf("console.filelog.hash-capped", visible(a["hashed_bytes"]))
	}
	switch {
	case a["user"] != "":
		r.User = visible(a["user"]) + " (" + visible(a["uid"]) + ")"
	case a["uid"] != "":
		r.User = visible(a["uid"])
	}
	r.Process = visible(a["process"])
	if a["pid"] != "" {
		r.Process += " (" + visible(a["pid"]) + ")"
	}
	return r
}

// fileLogCSVHeader and fileLogCSVRow are the section in the CSV export.
func fileLogCSVHeader(p *i18n.Printer) []string {
	return []string{
		p.Sprintf("console.filelog.col.received"), p.Sprintf("console.filelog.col.written"),
		p.Sprintf("console.col.hostname"), p.Sprintf("console.col.device-id"), p.Sprintf("console.col.group"),
		p.Sprintf("console.filelog.col.exception"), p.Sprintf("console.filelog.col.medium"),
		p.Sprintf("console.filelog.col.path"), p.Sprintf("console.filelog.col.size"), p.Sprintf("console.filelog.col.sha256"),
		p.Sprintf("console.filelog.col.user"), p.Sprintf("console.filelog.col.process"), p.Sprintf("console.filelog.col.note"),
	}
}

func fileLogCSVRow(p *i18n.Printer, r fileRecord, loc *time.Location) []string {
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format(time.RFC3339)
	}
	note := r.HashNote
	switch {
	case r.Damaged:
		note = p.Sprintf("console.filelog.damaged", r.Seq)
	case r.Lost != "" && r.Overflow:
		note = p.Sprintf("console.filelog.lost-overflow", r.Lost)
	case r.Lost != "":
		note = p.Sprintf("console.filelog.lost", r.Lost)
	}
	return []string{stamp(r.Received), stamp(r.Written), safeCell(r.Hostname), r.DeviceID, safeCell(r.Group),
		safeCell(r.ExceptionID), safeCell(r.Medium), safeCell(r.Path), safeCell(r.Size), safeCell(r.SHA256),
		safeCell(r.User), safeCell(r.Process), safeCell(note)}
}

// writeFileLogCSV appends the section to the export: a blank line, its
// title (with the clause), its header, its rows, and its totals.
func writeFileLogCSV(cw *csv.Writer, p *i18n.Printer, stream func(func([]fileRecord) error) error, loc *time.Location) error {
	_ = cw.Write([]string{})
	_ = cw.Write([]string{p.Sprintf("console.filelog.title"), "6(3)①"})
	_ = cw.Write(fileLogCSVHeader(p))
	var t fileLogTotals
	err := stream(func(page []fileRecord) error {
		t.add(page)
		for _, r := range page {
			_ = cw.Write(fileLogCSVRow(p, r, loc))
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return err
	}
	_ = cw.Write([]string{p.Sprintf("console.filelog.totals", t.Files, t.LostRecords, t.Damaged)})
	return nil
}
