package web

import (
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/textsafe"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// clause maps what mamori observes to the clause of the security policy
// (the municipal information security basic policy on the MIC three-tier
// model) that it evidences. The same table is in docs/console.md.
type clause struct {
	Control string // control name, or a pseudo-control for report sections
	Clause  string
	Ja, En  string
}

var clauses = []clause{
	{"media", "6(3)①", "持ち出し不可設定（外部記憶媒体への書込み禁止）", "No data taken off the terminal (removable media write block)"},
	{"login-mfa", "6(3)①", "多要素認証（端末の利用者認証）", "Multi-factor authentication (user authentication on the terminal)"},
	{"isolation", "6(3)①", "他の領域との通信をできないようにする（通信の分離）", "No communication with the other tiers (network isolation)"},
	{"agent", "6(7)", "監視（エージェントの稼働と自己点検）", "Monitoring (the agent runs and checks itself)"},
	{"offline", "6(7)", "監視（報告の途絶）", "Monitoring (terminals that stopped reporting)"},
	{"incidents", "6(7)", "監視・緊急時対応（インシデント）", "Monitoring and incident response"},
	{"audit", "7", "情報セキュリティ監査・自己点検（改ざん検知可能な監査ログ）", "Security audit and self-inspection (tamper-evident audit log)"},
	{"exceptions", "7", "情報セキュリティ監査・自己点検（例外措置の記録）", "Security audit and self-inspection (record of exceptions)"},
}

func clauseOf(control string) clause {
	for _, c := range clauses {
		if c.Control == control {
			return c
		}
	}
	return clause{Control: control, Clause: "6(6)", Ja: "技術的セキュリティ", En: "Technical security"}
}

func (cl clause) Title(p *i18n.Printer) string {
	if p.Lang() == i18n.English {
		return cl.En
	}
	return cl.Ja
}

const (
	evidencePage   = 200        // devices per page of the stream
	maxEvidenceDay = 366 * 3    // longest period, in days
	csvBOM         = "\ufeff"   // Excel in Japanese offices reads UTF-8 only with it
	formulaChars   = "=+-@\t\r" // a cell starting with one is a formula to a spreadsheet
)

// visible shows the invisible: bidi embedding, override and isolate
// controls (and the marks) in agent data would reorder what an officer or
// auditor reads ("exe.txt" shown for "txt.exe"), so they are replaced by
// their code point in brackets. Control characters become U+FFFD.
func visible(s string) string {
	if !strings.ContainsFunc(s, isHidden) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case isBidi(r):
			fmt.Fprintf(&b, "[U+%04X]", r)
		case r < 0x20 || r == 0x7f:
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var (
	isBidi   = textsafe.IsBidi
	isHidden = textsafe.IsHidden
)

// safeCell neutralises spreadsheet formula injection: a cell from agent
// data that starts with = + - @ (or a tab / CR) gets a leading apostrophe,
// which spreadsheets show as text.
func safeCell(s string) string {
	s = visible(s)
	if s != "" && strings.ContainsRune(formulaChars, rune(s[0])) {
		return "'" + s
	}
	return s
}

// evidenceRange reads from/to (YYYY-MM-DD, in the console's zone) into
// [from 00:00, to+1 00:00).
func (c *Console) evidenceRange(r *http.Request) (from, to time.Time, ok bool) {
	q := r.URL.Query()
	if g := q.Get("group"); len(g) > 255 || !utf8.ValidString(g) {
		return time.Time{}, time.Time{}, false
	}
	f, err1 := time.ParseInLocation(time.DateOnly, q.Get("from"), c.cfg.Location)
	t, err2 := time.ParseInLocation(time.DateOnly, q.Get("to"), c.cfg.Location)
	if err1 != nil || err2 != nil || t.Before(f) || t.Sub(f) > maxEvidenceDay*24*time.Hour {
		return time.Time{}, time.Time{}, false
	}
	return f, t.AddDate(0, 0, 1), true
}

type evidenceForm struct {
	From, To string
}

// evidenceForm is the officer's page to choose a period.
func (c *Console) evidenceForm(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	now := c.now().In(c.cfg.Location)
	v := evidenceForm{From: now.AddDate(0, -1, 0).Format(time.DateOnly), To: now.Format(time.DateOnly)}
	c.render(w, r, http.StatusOK, "evidence", view{P: p, Op: op, CSRF: op.csrf(), Data: struct {
		Form    evidenceForm
		Clauses []clauseView
	}{v, clauseViews(p)}})
}

type clauseView struct{ Control, Clause, Title string }

func clauseViews(p *i18n.Printer) []clauseView {
	var out []clauseView
	for _, cl := range clauses {
		out = append(out, clauseView{controlName(p, cl.Control), cl.Clause, cl.Title(p)})
	}
	return out
}

// controlPeriod is one control of one device over the period.
type controlPeriod struct {
	Control, Clause, ClauseTitle string
	Start, End                   string // state names at the start and end
	EndClass                     string
	EnforcedPct                  string
	Changes                      int
	Failed                       bool // FAILED or DEGRADED at some time in the period
}

type deviceEvidence struct {
	ID, Hostname, Group, Verdict, StateClass string
	LastSeen                                 time.Time
	Controls                                 []controlPeriod
}

// period computes, from a device's history (ordered by time), each
// control's state at from and at to, the share of [from, to) it was
// ENFORCED, and how often it changed.
func period(p *i18n.Printer, d store.Device, hist []store.HistoryEntry, from, to time.Time) []controlPeriod {
	byControl := map[string][]store.HistoryEntry{}
	for _, h := range hist {
		byControl[h.Control] = append(byControl[h.Control], h)
	}
	for _, cr := range d.Controls {
		if n := cr.GetStatus().GetControl(); byControl[n] == nil {
			byControl[n] = nil
		}
	}
	names := make([]string, 0, len(byControl))
	for n := range byControl {
		names = append(names, n)
	}
	sort.Strings(names)
	// The share is of the time the device was enrolled within the period.
	if d.EnrolledAt.After(from) {
		from = d.EnrolledAt
	}
	total := max(to.Sub(from), time.Microsecond)
	name := func(s mamoriv1.ControlState) string {
		if s == mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED {
			return p.Sprintf("console.evidence.not-reported")
		}
		return stateName(p, s)
	}
	var out []controlPeriod
	for _, n := range names {
		hs := byControl[n]
		state := mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED
		i := 0
		for ; i < len(hs) && !hs[i].At.After(from); i++ {
			state = hs[i].To
		}
		if i == len(hs) && len(hs) == 0 {
			// No history at all (older than the history table): the
			// current record is the best knowledge.
			for _, cr := range d.Controls {
				if cr.GetStatus().GetControl() == n && !cr.GetSince().AsTime().After(from) {
					state = cr.GetStatus().GetState()
				}
			}
		}
		cp := controlPeriod{Control: visible(controlName(p, n)), Start: name(state)}
		cl := clauseOf(n)
		cp.Clause, cp.ClauseTitle = cl.Clause, cl.Title(p)
		var enforced time.Duration
		at := from
		mark := func(s mamoriv1.ControlState) {
			if s == mamoriv1.ControlState_CONTROL_STATE_FAILED || s == mamoriv1.ControlState_CONTROL_STATE_DEGRADED {
				cp.Failed = true
			}
		}
		mark(state)
		for ; i < len(hs) && hs[i].At.Before(to); i++ {
			if state == mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
				enforced += hs[i].At.Sub(at)
			}
			at, state = hs[i].At, hs[i].To
			cp.Changes++
			mark(state)
		}
		if state == mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
			enforced += to.Sub(at)
		}
		cp.End = name(state)
		cp.EndClass = strings.ToLower(compliance.StateName(state))
		cp.EnforcedPct = fmt.Sprintf("%.1f%%", 100*float64(enforced)/float64(total))
		out = append(out, cp)
	}
	return out
}

// auditHead is the audit log's chain head and the result of verifying
// the whole chain now, as the report states it.
type auditHead struct {
	Records int64
	HeadSeq int64
	Head    string
	OK      bool
	Problem string
	// Actions counts the period's records by action (policy changes,
	// exceptions, revocations, incident handling…): clause 7 evidence.
	Actions []actionCount
}

type actionCount struct {
	Action string
	N      int
}

// maxUnsignedAudit is how many records may follow the last good signed
// checkpoint (mamorictl's maxUnsigned): the report signs the head before
// reading and the server every 100 records, so more means checkpoints
// were removed.
const maxUnsignedAudit = 1000

// verifyAudit recomputes the hash chain, page by page (bounded memory),
// with the verifier mamorictl uses (audit.Verifier): every break is
// counted, the report names the first. With ca, the server's signed
// checkpoints are checked too (issue 14 item 8): a log rewritten in the
// database with the unkeyed chain recomputed fails there, and so does
// one whose checkpoints were removed (none covers the log). Without ca
// the report cannot say the log is intact.
func verifyAudit(ctx context.Context, st store.Audit, ca *x509.Certificate, from, to time.Time) (auditHead, error) {
	var h auditHead
	var v audit.Verifier
	if ca != nil {
		v.Signed(audit.CheckCA(ca))
	}
	actions := map[string]int{}
	after := int64(0)
	for {
		rs, err := st.ListAudit(ctx, after, 1000)
		if err != nil {
			return h, err
		}
		for _, r := range rs {
			v.Add(r)
			if !r.At.Before(from) && r.At.Before(to) && !strings.HasPrefix(r.Action, "console.") {
				actions[r.Action]++
			}
		}
		if len(rs) < 1000 {
			break
		}
		after = rs[len(rs)-1].Seq
	}
	var head []byte
	h.HeadSeq, head = v.Head()
	h.Records, h.Head, h.OK, h.Problem = v.Records(), hex.EncodeToString(head), v.OK(), v.Problem()
	unsigned := h.HeadSeq - v.SignedThrough()
	if v.Checkpoints() > 0 {
		unsigned-- // the checkpoint record itself
	}
	switch {
	case !h.OK || h.Records == 0:
	case ca == nil:
		h.OK, h.Problem = false, "signed checkpoints not checked: the console has no CA certificate"
	case v.SignedThrough() == 0 || unsigned > maxUnsignedAudit:
		h.OK, h.Problem = false, fmt.Sprintf("no checkpoint signed by the server's CA key covers the log: %d records after the last good one (seq %d)",
			unsigned, v.SignedThrough())
	}
	for a, n := range actions {
		h.Actions = append(h.Actions, actionCount{visible(a), n})
	}
	sort.Slice(h.Actions, func(i, j int) bool { return h.Actions[i].Action < h.Actions[j].Action })
	return h, nil
}

// evidenceStream walks every device in pages and hands each page's
// evidence to emit: memory stays bounded by the page size.
func (c *Console) evidenceStream(ctx context.Context, p *i18n.Printer, pol *mamoriv1.Policy, from, to time.Time, group string, emit func([]deviceEvidence) error) error {
	after := ""
	now := c.now()
	for {
		ds, err := c.st.ListDevices(ctx, store.DeviceFilter{AfterID: after, Limit: evidencePage, Group: group})
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return nil
		}
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		hist, err := c.st.HistoryForDevices(ctx, ids, to)
		if err != nil {
			return err
		}
		byDev := map[string][]store.HistoryEntry{}
		for _, h := range hist {
			byDev[h.DeviceID] = append(byDev[h.DeviceID], h)
		}
		page := make([]deviceEvidence, 0, len(ds))
		for _, d := range ds {
			if d.EnrolledAt.After(to) {
				continue
			}
			st, _ := compliance.State(d, pol, now)
			page = append(page, deviceEvidence{ID: d.ID, Hostname: visible(d.Facts.GetHostname()), Group: visible(d.Group),
				Verdict: complianceName(p, st), StateClass: complianceClass(st), LastSeen: d.LastSeen,
				Controls: period(p, d, byDev[d.ID], from, to)})
		}
		if err := emit(page); err != nil {
			return err
		}
		if len(ds) < evidencePage {
			return nil
		}
		after = ds[len(ds)-1].ID
	}
}

type evidenceHeader struct {
	From, To      string
	Group         string // '' for the whole fleet
	Generated     time.Time
	By            string
	PolicyVersion int64
	Audit         auditHead
	Clauses       []clauseView
	Incidents     []ruleCount
	Changes       changeList // each change of the period (evidence_changes.go)
}

type ruleCount struct {
	Rule, Clause string
	N            int
}

// incidentCounts counts the incidents opened in the period, by rule.
func (c *Console) incidentCounts(ctx context.Context, from, to time.Time) ([]ruleCount, error) {
	counts := map[string]int{}
	before := int64(0)
	for range 1000 { // at most 1,000 pages of 500
		incs, err := c.st.Incidents(ctx, store.IncidentFilter{BeforeID: before, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, in := range incs {
			if !in.OpenedAt.Before(from) && in.OpenedAt.Before(to) {
				counts[in.Rule]++
			}
		}
		if len(incs) < 500 || incs[len(incs)-1].OpenedAt.Before(from) {
			break
		}
		before = incs[len(incs)-1].ID
	}
	var out []ruleCount
	for r, n := range counts {
		out = append(out, ruleCount{Rule: r, Clause: "6(7)", N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule < out[j].Rule })
	return out, nil
}

// evidenceReport streams the printable HTML report (A4, print stylesheet).
func (c *Console) evidenceReport(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	from, to, ok := c.evidenceRange(r)
	if !ok {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.period")
		return
	}
	hdr, pol, err := c.evidenceHeader(ctx, p, op, from, to)
	hdr.Group = strings.TrimSpace(r.URL.Query().Get("group"))
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if err := c.audit(ctx, op.ID, "evidence.export", "html", hdr.From+".."+hdr.To+" group="+hdr.Group); err != nil {
		c.internal(w, r, op, err)
		return
	}
	t := c.pages["report"]
	langName := "ja"
	if p.Lang() == i18n.English {
		langName = "en"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	data := func(d any) map[string]any { return map[string]any{"P": p, "Lang": langName, "H": hdr, "D": d} }
	if err := t.ExecuteTemplate(w, "report-head", data(nil)); err != nil {
		c.log.ErrorContext(ctx, "evidence report", "error", err)
		return
	}
	err = c.evidenceStream(ctx, p, pol, from, to, hdr.Group, func(page []deviceEvidence) error {
		return t.ExecuteTemplate(w, "report-rows", data(page))
	})
	if err == nil {
		err = t.ExecuteTemplate(w, "report-files-head", data(nil))
	}
	var totals fileLogTotals
	if err == nil {
		err = c.fileLogStream(ctx, p, from, to, hdr.Group, func(page []fileRecord) error {
			totals.add(page)
			return t.ExecuteTemplate(w, "report-files-rows", data(page))
		})
	}
	if err == nil {
		err = t.ExecuteTemplate(w, "report-files-foot", data(totals))
	}
	if err != nil {
		// Headers are gone: say so in the document itself.
		c.log.ErrorContext(ctx, "evidence report", "error", err)
		_ = t.ExecuteTemplate(w, "report-error", data(nil))
		return
	}
	_ = t.ExecuteTemplate(w, "report-foot", data(nil))
}

func (c *Console) evidenceHeader(ctx context.Context, p *i18n.Printer, op *operator, from, to time.Time) (evidenceHeader, *mamoriv1.Policy, error) {
	pol, err := c.st.CurrentPolicy(ctx)
	if err != nil {
		return evidenceHeader{}, nil, err
	}
	// An export: the audit log's head is signed first. A server that
	// finds the log rewritten since its last checkpoint refuses to sign
	// it; the report is still made, and says so (verifyAudit).
	if err := c.admin.Checkpoint(ctx); err != nil && !errors.Is(err, admin.ErrAuditRewritten) {
		return evidenceHeader{}, nil, err
	}
	ah, err := verifyAudit(ctx, c.st, c.auditCA, from, to)
	if err != nil {
		return evidenceHeader{}, nil, err
	}
	ic, err := c.incidentCounts(ctx, from, to)
	if err != nil {
		return evidenceHeader{}, nil, err
	}
	ch, err := c.periodChanges(ctx, p, from, to)
	if err != nil {
		return evidenceHeader{}, nil, err
	}
	return evidenceHeader{From: from.Format(time.DateOnly), To: to.AddDate(0, 0, -1).Format(time.DateOnly), Generated: c.now(),
		By: op.Name, PolicyVersion: pol.Version, Audit: ah, Clauses: clauseViews(p), Incidents: ic, Changes: ch}, pol, nil
}

// evidenceCSV streams the CSV: UTF-8 with a BOM, RFC 4180 (CRLF, quotes
// doubled), formula-injection-safe cells. The first lines carry the
// period and the audit chain head, as comments an auditor keeps with it.
func (c *Console) evidenceCSV(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	from, to, ok := c.evidenceRange(r)
	if !ok {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.period")
		return
	}
	hdr, pol, err := c.evidenceHeader(ctx, p, op, from, to)
	hdr.Group = strings.TrimSpace(r.URL.Query().Get("group"))
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if err := c.audit(ctx, op.ID, "evidence.export", "csv", hdr.From+".."+hdr.To+" group="+hdr.Group); err != nil {
		c.internal(w, r, op, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="mamori-evidence-%s-%s.csv"`, hdr.From, hdr.To))
	writeEvidenceCSV(ctx, w, p, hdr, func(emit func([]deviceEvidence) error) error {
		return c.evidenceStream(ctx, p, pol, from, to, hdr.Group, emit)
	}, func(emit func([]fileRecord) error) error {
		return c.fileLogStream(ctx, p, from, to, hdr.Group, emit)
	}, c.cfg.Location)
}

func writeEvidenceCSV(ctx context.Context, w io.Writer, p *i18n.Printer, hdr evidenceHeader, stream func(func([]deviceEvidence) error) error,
	files func(func([]fileRecord) error) error, loc *time.Location) {
	io.WriteString(w, csvBOM)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	verified := p.Sprintf("console.evidence.chain-ok")
	if !hdr.Audit.OK {
		verified = p.Sprintf("console.evidence.chain-broken", hdr.Audit.Problem)
	}
	_ = cw.Write([]string{p.Sprintf("console.evidence.title"), hdr.From, hdr.To, safeCell(hdr.Group)})
	_ = cw.Write([]string{p.Sprintf("console.evidence.chain-head"), strconv.FormatInt(hdr.Audit.HeadSeq, 10), hdr.Audit.Head, verified})
	_ = cw.Write([]string{
		p.Sprintf("console.col.hostname"), p.Sprintf("console.col.device-id"), p.Sprintf("console.col.group"),
		p.Sprintf("console.col.control"), p.Sprintf("console.col.clause"), p.Sprintf("console.col.clause-title"),
		p.Sprintf("console.col.state-start"), p.Sprintf("console.col.state-end"), p.Sprintf("console.col.enforced-pct"),
		p.Sprintf("console.col.changes"), p.Sprintf("console.col.state"), p.Sprintf("console.col.last-seen"),
	})
	err := stream(func(page []deviceEvidence) error {
		for _, d := range page {
			seen := ""
			if !d.LastSeen.IsZero() {
				seen = d.LastSeen.In(loc).Format(time.RFC3339)
			}
			if len(d.Controls) == 0 {
				_ = cw.Write([]string{safeCell(d.Hostname), d.ID, safeCell(d.Group), "", "", "", "", "", "", "", d.Verdict, seen})
			}
			for _, cp := range d.Controls {
				_ = cw.Write([]string{safeCell(d.Hostname), d.ID, safeCell(d.Group), safeCell(cp.Control), cp.Clause, cp.ClauseTitle,
					cp.Start, cp.End, cp.EnforcedPct, strconv.Itoa(cp.Changes), d.Verdict, seen})
			}
		}
		cw.Flush()
		return cw.Error()
	})
	if err == nil {
		err = writeFileLogCSV(cw, p, files, loc)
	}
	if err != nil {
		_ = cw.Write([]string{"ERROR: export incomplete"})
	}
	cw.Flush()
}

// reportTemplate is the standalone printable report (its own document,
// not the console layout: no navigation, A4 print CSS).
func parseReport(funcs template.FuncMap) (*template.Template, error) {
	return template.New("report").Funcs(funcs).ParseFS(templateFS, "templates/report.html")
}
