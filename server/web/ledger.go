package web

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/ledger"
	"github.com/mamori-dev/mamori/server/store"
)

// The asset ledger (端末台帳): the officer imports a CSV of the terminals
// the municipality owns; the page matches it to the enrolled devices.

// maxUploadBytes bounds a multipart POST (the ledger file and the form).
const maxUploadBytes = ledger.MaxBytes + 64<<10

type ledgerRowView struct {
	ledger.Row
	StateName string
}

type ledgerCount struct {
	State, Name string
	N           int
	Selected    bool
}

type ledgerView struct {
	Rows []ledgerRowView
	// State is the state the rows are filtered to ("" for all); Hidden
	// is how many rows of it are not shown (past ledgerRowsShown).
	State      string
	Hidden     int
	Counts     []ledgerCount
	ImportedAt time.Time
	ImportedBy string
	Problems   []ledger.RowError
	More       int
}

// ledgerRowsShown bounds the rows one page renders: a prefecture's ledger
// or fleet has tens of thousands, and rendering is most of the page's
// cost. The counts are always complete; each is a link to its rows.
const ledgerRowsShown = 500

// ledgerStates in the order the page lists them: what needs a person first.
var ledgerStates = []string{ledger.StateNeverEnrolled, ledger.StateOffline, ledger.StateRevoked, ledger.StateNotInLedger, ledger.StateEnrolled}

func (c *Console) ledgerPage(w http.ResponseWriter, r *http.Request, op *operator) {
	c.renderLedger(w, r, op, http.StatusOK, nil, "")
}

func (c *Console) renderLedger(w http.ResponseWriter, r *http.Request, op *operator, status int, problems *ledger.Errors, msg string) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	pol, err := c.st.CurrentPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		pol, err = policy.Default(), nil
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	rows, l, err := ledger.Rows(ctx, c.st, pol, c.now(), 1000)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v := ledgerView{ImportedAt: l.ImportedAt}
	if l.ImportedBy != "" {
		v.ImportedBy = l.ImportedBy
		if o, err := c.st.GetOperator(ctx, l.ImportedBy); err == nil {
			v.ImportedBy = o.Name
		}
	}
	if s := r.URL.Query().Get("state"); slices.Contains(ledgerStates, s) {
		v.State = s
	}
	counts := map[string]int{}
	for _, row := range rows {
		counts[row.State]++
	}
	// Rows needing a person first, each state in the ledger's order.
	for _, s := range ledgerStates {
		for _, row := range rows {
			if row.State != s || (v.State != "" && s != v.State) {
				continue
			}
			if len(v.Rows) == ledgerRowsShown {
				v.Hidden++
				continue
			}
			v.Rows = append(v.Rows, ledgerRowView{Row: row, StateName: p.Sprintf(i18n.ID("console.ledger.state." + row.State))})
		}
		v.Counts = append(v.Counts, ledgerCount{State: s, Name: p.Sprintf(i18n.ID("console.ledger.state." + s)), N: counts[s], Selected: s == v.State})
	}
	if problems != nil {
		v.Problems, v.More = problems.List, problems.More
	}
	c.render(w, r, status, "ledger", view{P: p, Op: op, CSRF: op.csrf(), Error: msg, Data: v})
}

// importLedger replaces the ledger with the uploaded CSV (officer). The
// route checked role and CSRF (the form is multipart).
func (c *Console) importLedger(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if strings.TrimSpace(reason) == "" || admin.CheckString("ledger.import", "reason", reason, admin.MaxReasonLength) != nil {
		// Asked before the file, so a missing reason is said first.
		c.renderLedger(w, r, op, http.StatusBadRequest, nil, p.Sprintf("console.err.reason"))
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		c.renderLedger(w, r, op, http.StatusBadRequest, nil, p.Sprintf("console.ledger.err-file"))
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, ledger.MaxBytes+1))
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	_, err = c.admin.ImportLedger(r.Context(), op.admin(), b, reason)
	if status, msg, ok := refusal(p, err); ok {
		var perr *ledger.Errors
		errors.As(err, &perr) // the rows at fault, when it was the file
		c.renderLedger(w, r, op, status, perr, msg)
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	http.Redirect(w, r, "/ledger", http.StatusSeeOther)
}
