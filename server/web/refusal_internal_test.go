package web

import (
	"errors"
	"testing"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/admin"
)

// TestRefusalRules: every message the refusal table names is in the
// catalog, and a refusal the table does not know is internal, not a page.
func TestRefusalRules(t *testing.T) {
	for _, r := range refusalRules {
		if _, ok := i18n.Default().Lookup(r.msg); !ok {
			t.Errorf("rule %s/%v/%q: message %s is not in the catalog", r.action, r.kind, r.field, r.msg)
		}
	}
	p := i18n.NewPrinter(i18n.English)
	if _, _, ok := refusal(p, errors.New("disk full")); ok {
		t.Error("a plain error was taken for a refusal")
	}
	if _, _, ok := refusal(p, &admin.Error{Action: "token.create", Kind: admin.ErrInvalid, Msg: "x"}); ok {
		t.Error("a refusal of an action the console does not offer was given a page")
	}
	status, msg, ok := refusal(p, &admin.Error{Action: "exception.revoke", Kind: admin.ErrConflict})
	if !ok || status != 409 || msg != p.Sprintf("console.exc.err-revoked") {
		t.Errorf("exception revoked twice: %d %q %v", status, msg, ok)
	}
}
