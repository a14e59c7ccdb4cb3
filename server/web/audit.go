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
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

const (
	auditShown    = 200  // records a page shows
	auditPageRead = 1000 // records read from the store at a time
)

type auditQuery struct {
	Actor, Action, Device, From, To string
	from, to                        time.Time // [from, to) in the console's zone; zero: open
	// Before: the page shows records before this seq (0: the newest).
	Before int64
}

func (c *Console) parseAuditQuery(q url.Values) (auditQuery, bool) {
	v := auditQuery{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")),
		Device: strings.TrimSpace(q.Get("device")), From: q.Get("from"), To: q.Get("to")}
	for _, s := range []string{v.Actor, v.Action, v.Device, v.From, v.To} {
		if len(s) > maxSearchLength || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
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
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return v, false
		}
		v.Before = n
	}
	return v, true
}

// encode is the query string of the filters (not the page) and kv.
func (v auditQuery) encode(kv ...string) string {
	q := url.Values{}
	for k, s := range map[string]string{"actor": v.Actor, "action": v.Action, "device": v.Device, "from": v.From, "to": v.To} {
		if s != "" {
			q.Set(k, s)
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q.Encode()
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
	Q       auditQuery
	Rows    []auditRow
	Records int64
	OK      bool
	Problem string
	HeadSeq int64
	Head    string
	OwnOnly bool
	CSV     string
	// Older: the next page's query; Newest: the first page's, when this
	// is not it.
	Older, Newest string
}

// actionName is an audit action in the reader's language, the identifier
// when the catalogue has none.
func actionName(p *i18n.Printer, action string) string {
	if s, ok := p.Lookup(i18n.ID("console.audit.action." + action)); ok {
		return s
	}
	return action
}

// chainCache verifies the audit chain incrementally: each look reads only
// the records appended since the last (audit.Verifier carries the state),
// so a page view does not read the whole log. The first look after the
// server starts reads it once, a page of the store at a time. When the
// log's head is behind what was verified (records removed at the end),
// it verifies again from the start.
type chainCache struct {
	mu  sync.Mutex
	ver audit.Verifier
}

type chainState struct {
	Records, HeadSeq int64
	Head             string
	OK               bool
	Problem          string
}

func (cc *chainCache) look(ctx context.Context, st store.Audit) (chainState, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	seq, _ := cc.ver.Head()
	head, err := st.AuditHead(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if seq > 0 {
			cc.ver = audit.Verifier{}
		}
	case err != nil:
		return chainState{}, err
	case head.Seq < seq:
		cc.ver = audit.Verifier{}
	}
	for {
		after, _ := cc.ver.Head()
		rs, err := st.ListAudit(ctx, after, auditPageRead)
		if err != nil {
			return chainState{}, err
		}
		for _, r := range rs {
			cc.ver.Add(r)
		}
		if len(rs) < auditPageRead {
			break
		}
	}
	s, h := cc.ver.Head()
	return chainState{Records: cc.ver.Records(), HeadSeq: s, Head: hex.EncodeToString(h), OK: cc.ver.OK(), Problem: cc.ver.Problem()}, nil
}

// storeAuditQuery turns the page's filters into the store's: actor by ID
// or by (part of) an operator's name, action and the actions under it,
// device by ID or host name (as actor or named in the target), days in
// the console's zone. The helpdesk's query is limited to its own records.
func (c *Console) storeAuditQuery(ctx context.Context, op *operator, v auditQuery) (store.AuditQuery, error) {
	q := store.AuditQuery{Action: v.Action, From: v.from, To: v.to}
	if v.Actor != "" {
		q.Actors = []string{v.Actor}
		ops, err := c.st.ListOperators(ctx)
		if err != nil {
			return q, err
		}
		for _, o := range ops {
			if o.ID != v.Actor && strings.Contains(o.Name, v.Actor) && len(q.Actors) < store.MaxAuditFilterValues {
				q.Actors = append(q.Actors, o.ID)
			}
		}
	}
	if !op.Role.Allows(auth.RoleOfficer) {
		if q.Actors == nil || slices.Contains(q.Actors, op.ID) {
			q.Actors = []string{op.ID}
		} else {
			q.Actors = []string{}
		}
	}
	if v.Device != "" {
		q.Devices = []string{v.Device}
		if d, err := c.st.FindDevice(ctx, v.Device); err == nil && d.ID != v.Device {
			q.Devices = append(q.Devices, d.ID)
		}
	}
	return q, nil
}

// auditRows reads one page of the store and renders its records.
func (c *Console) auditRows(ctx context.Context, p *i18n.Printer, q store.AuditQuery, names map[string]string) ([]auditRow, error) {
	rs, err := c.st.ListAuditPage(ctx, q)
	if err != nil {
		return nil, err
	}
	nameOf := func(actor string) string {
		if n, ok := names[actor]; ok {
			return n
		}
		n := actor
		switch {
		case actor == "system":
			n = p.Sprintf("console.audit.system")
		case strings.HasPrefix(actor, "device:"):
		default:
			if o, err := c.st.GetOperator(ctx, actor); err == nil {
				n = o.Name
			}
		}
		names[actor] = n
		return n
	}
	out := make([]auditRow, 0, len(rs))
	for _, r := range rs {
		out = append(out, auditRow{Seq: r.Seq, At: r.At, Actor: visible(nameOf(r.Actor)), ActorID: r.Actor, Action: actionName(p, r.Action),
			ActionID: r.Action, Target: visible(r.Target), Detail: visible(r.Detail), Refusal: r.Action == "console.denied"})
	}
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
	q, err := c.storeAuditQuery(ctx, op, v)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	// The newest auditShown records before v.Before, and one more to know
	// whether there is an older page.
	q.Desc, q.Cursor, q.Limit = true, v.Before, auditShown+1
	rows, err := c.auditRows(ctx, p, q, map[string]string{})
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	cs, err := c.chain.look(ctx, c.st)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	av := auditView{Q: v, OwnOnly: !op.Role.Allows(auth.RoleOfficer), Records: cs.Records, OK: cs.OK, Problem: cs.Problem,
		HeadSeq: cs.HeadSeq, Head: cs.Head, CSV: v.encode("format", "csv")}
	if len(rows) > auditShown {
		rows = rows[:auditShown]
		av.Older = v.encode("before", strconv.FormatInt(rows[len(rows)-1].Seq, 10))
	}
	if v.Before > 0 {
		av.Newest = v.encode()
	}
	av.Rows = rows
	c.render(w, r, http.StatusOK, "audit", view{P: p, Op: op, CSRF: op.csrf(), Data: av})
}

// auditCSV streams every matching record, oldest first, a page of the
// store at a time (BOM, CRLF, formula-safe), then the chain's state, and
// audits the export.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request, op *operator, p *i18n.Printer, v auditQuery) {
	ctx := r.Context()
	q, err := c.storeAuditQuery(ctx, op, v)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
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
	q.Limit = auditPageRead
	names := map[string]string{}
	fail := func(err error) {
		c.log.ErrorContext(ctx, "audit CSV", "error", err)
		_ = cw.Write([]string{p.Sprintf("console.err.internal")})
		cw.Flush()
	}
	for {
		rows, err := c.auditRows(ctx, p, q, names)
		if err != nil {
			fail(err)
			return
		}
		for _, row := range rows {
			_ = cw.Write([]string{fmt.Sprint(row.Seq), row.At.In(c.cfg.Location).Format(time.RFC3339), safeCell(row.Actor), safeCell(row.ActorID),
				row.Action, safeCell(row.ActionID), safeCell(row.Target), safeCell(row.Detail)})
		}
		cw.Flush()
		if len(rows) < q.Limit || cw.Error() != nil || ctx.Err() != nil {
			break
		}
		q.Cursor = rows[len(rows)-1].Seq
		if len(names) > 10_000 {
			clear(names)
		}
	}
	cs, err := c.chain.look(ctx, c.st)
	if err != nil {
		fail(err)
		return
	}
	verified := p.Sprintf("console.evidence.chain-ok")
	if !cs.OK {
		verified = p.Sprintf("console.evidence.chain-broken", cs.Problem)
	}
	_ = cw.Write([]string{p.Sprintf("console.evidence.chain-head"), fmt.Sprint(cs.HeadSeq), cs.Head, verified})
	cw.Flush()
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
