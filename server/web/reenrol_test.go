package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/server/servertest"
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
