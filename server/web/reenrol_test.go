package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// A possible clone (a claimed machine ID without proof) is shown as such
// on its device page, with an approval form for officers only; the
// approval is audited and the record it replaces is revoked.
func TestConsoleApproveReenrolment(t *testing.T) {
	e := start(t)
	victim := e.device(t, "pc-victim", healthy())
	vdev, err := e.h.Srv.Store().GetDevice(context.Background(), victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	clone, err := e.h.Enroll(t, e.h.Token(t, 1, 0), servertest.Facts("pc-reimaged", vdev.Facts.GetMachineId()))
	if err != nil {
		t.Fatal(err)
	}

	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	p := hd.get("/devices/" + clone.ID)
	if !strings.Contains(p.body, `id="clone-of"`) || !strings.Contains(p.body, victim.ID) {
		t.Fatalf("the clone's page does not say it is a possible clone:\n%s", p.body)
	}
	if strings.Contains(p.body, "approve-form") {
		t.Error("the helpdesk sees the approval form")
	}
	if p := hd.post("/devices/"+clone.ID+"/approve-reenrolment", url.Values{"csrf": {csrfOf(t, p)}, "reason": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("helpdesk approval: %d, want 403", p.status)
	}

	off := e.browser(t, "ja")
	off.signIn(e.officer)
	p = off.get("/devices/" + clone.ID)
	if !strings.Contains(p.body, "approve-form") || !strings.Contains(p.body, "複製の疑い") {
		t.Fatalf("the officer's page has no approval form or Japanese flag:\n%s", p.body)
	}
	if p := off.get("/devices/" + victim.ID); strings.Contains(p.body, "approve-form") {
		t.Error("an approval form on a device that is not flagged")
	}
	if p := off.post("/devices/"+victim.ID+"/approve-reenrolment", url.Values{"csrf": {csrfOf(t, p)}, "reason": {"x"}}); p.status != http.StatusBadRequest {
		t.Errorf("approving a device that is not flagged: %d, want 400", p.status)
	}
	p = off.post("/devices/"+clone.ID+"/approve-reenrolment", url.Values{"csrf": {csrfOf(t, p)}, "reason": {"現地で再イメージ化を確認"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("officer approval: %d\n%s", p.status, p.body)
	}
	got, _ := e.h.Srv.Store().GetDevice(context.Background(), clone.ID)
	old, _ := e.h.Srv.Store().GetDevice(context.Background(), victim.ID)
	if got.CloneOf != "" || got.Facts.GetMachineId() != vdev.Facts.GetMachineId() || old.RevokedAt.IsZero() {
		t.Errorf("after approval: clone_of %q machine %q; old revoked %v", got.CloneOf, got.Facts.GetMachineId(), old.RevokedAt)
	}
	if !e.hasAudit(t, e.officer.opID, "device.approve-reenrolment", clone.ID) {
		t.Error("the approval is not in the audit log")
	}
}

// A TPM key whose EK is not verified is shown as "TPM key, not attested"
// with its EK, never as attested.
func TestConsoleTPMKeyNotAttested(t *testing.T) {
	e := start(t)
	tok := e.h.Token(t, 1, 0)
	ek := strings.Repeat("ab", 32)
	res, err := e.h.Srv.Store().Enroll(context.Background(), store.EnrollParams{
		TokenHash: auth.HashToken(tok), Now: e.h.Clock.Now(), Facts: servertest.Facts("pc-swtpm", "machine-swtpm"),
		NewDeviceID: "dev-swtpm", EKFingerprint: ek,
		Sign: func(string) ([]byte, string, error) { return []byte("c"), "5e", nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for lang, want := range map[string]string{"ja": "TPM 内の鍵・未証明: EK " + ek, "en": "TPM key, not attested: EK " + ek} {
		b := e.browser(t, lang)
		b.signIn(e.helpdesk)
		p := b.get("/devices/" + res.Device.ID)
		if !strings.Contains(p.body, want) || strings.Contains(p.body, "attested in the TPM") || strings.Contains(p.body, "TPM 内の鍵として証明済み") {
			t.Errorf("%s device page of an unverified TPM key:\n%s", lang, p.body)
		}
	}
}

// Token guessing from one address opens an incident about that address,
// listed without a link to a device page that does not exist.
func TestConsoleTokenGuessingIncident(t *testing.T) {
	e := start(t)
	cc := e.h.Dial(t, pki.ClientTLSConfig(e.h.CAPool(), nil, "localhost"))
	key, _ := pki.NewDeviceKey()
	csr, _ := pki.NewCSR(key, "pc-guess")
	for i := range 10 {
		guess := auth.EnrollmentTokenPrefix + strings.Repeat("c", 31) + string(rune('a'+i))
		if _, err := mamoriv1.NewAgentServiceClient(cc).Enroll(context.Background(), &mamoriv1.EnrollRequest{
			Token: guess, Csr: csr, Facts: servertest.Facts("pc-guess", "machine-guess")}); err == nil {
			t.Fatal("a guessed token enrolled")
		}
	}
	e.step(t)
	b := e.browser(t, "en")
	b.signIn(e.officer)
	p := b.get("/incidents")
	if !strings.Contains(p.body, "source:127.0.0.1") || strings.Contains(p.body, `href="/devices/source:`) ||
		!strings.Contains(p.body, "Many enrolments with a wrong token from one address") {
		t.Errorf("incidents page:\n%s", p.body)
	}
}
