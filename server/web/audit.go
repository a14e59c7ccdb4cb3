package web

// The audit log page (issue #19): every record, filtered by actor, action,
// device and time, with the hash chain verified on the same pass and a CSV
// export. The officer sees every record; the helpdesk only its own
// actions. Refusals (console.denied, cross-origin requests included) and
// sign-ins are records like any other.

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

const (
	auditShown    = 200  // the newest matching records a page shows
	auditPageRead = 1000 // records read from the store at a time
)

type auditQuery struct {
	Actor, Action, Device, From, To string
	from, to                        time.Time // [from, to) in the console's zone; zero: open
}

func (c *Console) parseAuditQuery(q url.Values) (auditQuery, bool) {
	v := auditQuery{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")),
		Device: strings.TrimSpace(q.Get("device")), From: q.Get("from"), To: q.Get("to")}
	for _, s := range []string{v.Actor, v.Action, v.Device, v.From, v.To} {
		if len(s) > maxSearchLength || !utf8.ValidString(s) {
			return v, false
		}
	}
	if v.From != "" {
		t, err := time.ParseInLocation(time.DateOnly, v.From, c.cfg.Location)
		if err != nil {
			return v, false
		}
		v.from = t
	}
	if v.To != "" {
		t, err := time.ParseInLocation(time.DateOnly, v.To, c.cfg.Location)
		if err != nil {
			return v, false
		}
		v.to = t.AddDate(0, 0, 1)
	}
	return v, true
}

func (v auditQuery) encode() string {
	q := url.Values{}
	for k, s := range map[string]string{"actor": v.Actor, "action": v.Action, "device": v.Device, "from": v.From, "to": v.To} {
		if s != "" {
			q.Set(k, s)
		}
	}
	return q.Encode()
}

// match reports whether r passes the filters. actorName names an actor.
func (v auditQuery) match(r store.AuditRecord, actorName string, deviceIDs map[string]bool) bool {
	if !v.from.IsZero() && r.At.Before(v.from) || !v.to.IsZero() && !r.At.Before(v.to) {
		return false
	}
	if v.Actor != "" && r.Actor != v.Actor && !strings.Contains(actorName, v.Actor) {
		return false
	}
	if v.Action != "" && r.Action != v.Action && !strings.HasPrefix(r.Action, v.Action+".") {
		return false
	}
	if v.Device != "" {
		if deviceIDs[strings.TrimPrefix(r.Actor, "device:")] {
			return true
		}
		for id := range deviceIDs {
			if strings.Contains(r.Target, id) {
				return true
			}
		}
		return false
	}
	return true
}

type auditRow struct {
	Seq              int64
	At               time.Time
	Actor, ActorID   string
	Action, ActionID string
	Target, Detail   string
	Refusal          bool
}

type auditView struct {
	Q         auditQuery
	Rows      []auditRow
	Matched   int64
	Records   int64
	OK        bool
	Problem   string
	HeadSeq   int64
	Head      string
	OwnOnly   bool
	CSV       string
	Truncated bool
}

// actionName is an audit action in the reader's language, the identifier
// when the catalogue has none.
func actionName(p *i18n.Printer, action string) string {
	if s, ok := p.Lookup(i18n.ID("console.audit.action." + action)); ok {
		return s
	}
	return action
}

// auditScan reads the whole log once: it verifies the chain and hands
// each record passing the filters (and, for the helpdesk, its own) to
// emit.
func (c *Console) auditScan(ctx context.Context, p *i18n.Printer, op *operator, v auditQuery, emit func(auditRow)) (auditView, error) {
	out := auditView{Q: v, OwnOnly: !op.Role.Allows(auth.RoleOfficer)}
	names := map[string]string{}
	nameOf := func(actor string) string {
		if n, ok := names[actor]; ok {
			return n
		}
		n := actor
		switch {
		case actor == "system":
			n = p.Sprintf("console.audit.system")
		case strings.HasPrefix(actor, "device:"):
			n = actor
		default:
			if o, err := c.st.GetOperator(ctx, actor); err == nil {
				n = o.Name
			}
		}
		names[actor] = n
		return n
	}
	devices := map[string]bool{}
	if v.Device != "" {
		devices[v.Device] = true
		if d, err := c.st.FindDevice(ctx, v.Device); err == nil {
			devices[d.ID] = true
		}
	}
	var ver audit.Verifier
	after := int64(0)
	for {
		rs, err := c.st.ListAudit(ctx, after, auditPageRead)
		if err != nil {
			return out, err
		}
		for _, r := range rs {
			ver.Add(r)
			if out.OwnOnly && r.Actor != op.ID {
				continue
			}
			if !v.match(r, nameOf(r.Actor), devices) {
				continue
			}
			out.Matched++
			emit(auditRow{Seq: r.Seq, At: r.At, Actor: visible(nameOf(r.Actor)), ActorID: r.Actor, Action: actionName(p, r.Action),
				ActionID: r.Action, Target: visible(r.Target), Detail: visible(r.Detail), Refusal: r.Action == "console.denied"})
		}
		if len(rs) < auditPageRead {
			break
		}
		after = rs[len(rs)-1].Seq
	}
	var head []byte
	out.HeadSeq, head = ver.Head()
	out.Records, out.Head, out.OK, out.Problem = ver.Records(), hex.EncodeToString(head), ver.OK(), ver.Problem()
	return out, nil
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	v, ok := c.parseAuditQuery(r.URL.Query())
	if !ok {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.bad-form")
		return
	}
	if r.URL.Query().Get("format") == "csv" {
		c.auditCSV(w, r, op, p, v)
		return
	}
	// The newest auditShown matches, newest first: a ring over the scan.
	ring := make([]auditRow, 0, auditShown)
	next := 0
	av, err := c.auditScan(ctx, p, op, v, func(row auditRow) {
		if len(ring) < auditShown {
			ring = append(ring, row)
			return
		}
		ring[next] = row
		next = (next + 1) % auditShown
	})
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	ordered := append(append([]auditRow(nil), ring[next:]...), ring[:next]...)
	for i := len(ordered) - 1; i >= 0; i-- {
		av.Rows = append(av.Rows, ordered[i])
	}
	av.Truncated = av.Matched > int64(len(av.Rows))
	q := v.encode()
	if q != "" {
		q += "&"
	}
	av.CSV = q + "format=csv"
	c.render(w, r, http.StatusOK, "audit", view{P: p, Op: op, CSRF: op.csrf(), Data: av})
}

// auditCSV streams every matching record (BOM, CRLF, formula-safe) and
// the chain's state at the end, and audits the export.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request, op *operator, p *i18n.Printer, v auditQuery) {
	ctx := r.Context()
	if err := c.audit(ctx, op.ID, "audit.export", "csv", v.encode()); err != nil {
		c.internal(w, r, op, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="mamori-audit-%s.csv"`, c.now().In(c.cfg.Location).Format("20060102-1504")))
	io.WriteString(w, csvBOM)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	_ = cw.Write([]string{p.Sprintf("console.audit.seq"), p.Sprintf("console.col.time"), p.Sprintf("console.audit.actor"), p.Sprintf("console.audit.actor-id"),
		p.Sprintf("console.audit.action"), p.Sprintf("console.audit.action-id"), p.Sprintf("console.audit.target"), p.Sprintf("console.col.detail")})
	av, err := c.auditScan(ctx, p, op, v, func(row auditRow) {
		_ = cw.Write([]string{fmt.Sprint(row.Seq), row.At.In(c.cfg.Location).Format(time.RFC3339), safeCell(row.Actor), safeCell(row.ActorID),
			row.Action, safeCell(row.ActionID), safeCell(row.Target), safeCell(row.Detail)})
	})
	if err != nil {
		c.log.ErrorContext(ctx, "audit CSV", "error", err)
		_ = cw.Write([]string{p.Sprintf("console.err.internal")})
	} else {
		verified := p.Sprintf("console.evidence.chain-ok")
		if !av.OK {
			verified = p.Sprintf("console.evidence.chain-broken", av.Problem)
		}
		_ = cw.Write([]string{p.Sprintf("console.evidence.chain-head"), fmt.Sprint(av.HeadSeq), av.Head, verified})
	}
	cw.Flush()
}

// crossOriginRefused answers a POST from another origin (or a browser's
// cross-site request) that http.CrossOriginProtection refused: audited as
// a refusal like a wrong CSRF token, answered with a translated page.
func (c *Console) crossOriginRefused(w http.ResponseWriter, r *http.Request) {
	c.n.denied.Add(1)
	actor := "anonymous"
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if hash, err := auth.HashSessionID(auth.Secret(ck.Value)); err == nil {
			if _, o, err := c.st.Session(r.Context(), hash); err == nil {
				actor = o.ID
			}
		}
	}
	detail := "cross-origin request refused"
	if o := r.Header.Get("Origin"); o != "" {
		detail += "; Origin " + clipText(o, 200)
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		detail += "; Sec-Fetch-Site " + clipText(s, 40)
	}
	_ = c.audit(r.Context(), actor, "console.denied", r.Method+" "+clipText(r.URL.Path, 200), detail)
	c.fail(w, r, http.StatusForbidden, nil, "console.err.cross-origin")
}

// clipText bounds text from a request that goes into the audit log.
func clipText(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
