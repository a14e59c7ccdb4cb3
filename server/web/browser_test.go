package web_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/browsertest"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// TestBrowser drives Debian's Chromium (headless) against the real server
// on 127.0.0.1: sign-in with password and TOTP, the fleet page showing a
// device that a real agent report (mTLS gRPC) made non-compliant, its
// device page, an officer's revoke through the real form, and an
// officer approving an exception (例外措置) through its form, and editing
// the policy (diff, confirm, new version) as JSON and through the form (a
// media class mode for one group), and importing a Shift_JIS asset
// ledger through the upload form. Screenshots of the fleet, device,
// exceptions, policy diff, policy form and ledger pages are kept.
func TestBrowser(t *testing.T) {
	testenv.Short(t)
	e := start(t)
	e.device(t, "kyoto-pc-07", failing("mamori-agent self-check failed: spool not writable",
		map[string]string{"spool": "/var/lib/mamori-agent/spool: read-only file system"}),
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: "usb_write_blocked",
			Attributes: map[string]string{"usb_serial": "AA0123", "user": "tanaka"}})
	e.device(t, "kyoto-pc-08", healthy())
	e.step(t) // daily snapshot, incidents, search terms

	br := browsertest.Start(t, e.h.ConsoleURL, e.h.CAPool(), 60*time.Second)
	ctx, dir, text, shot := br.Ctx, br.Dir, br.Text, br.Shot

	// Signed out, the fleet page leads to the sign-in form.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.h.ConsoleURL+"/fleet"), chromedp.WaitVisible(chromedp.ID("login-form"))); err != nil {
		t.Fatalf("open console: %v", err)
	}
	e.h.Clock.Advance(30 * time.Second)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("login"), e.officer.login),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("totp"), e.code(t, e.officer)),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("attention")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if got := text("#attention"); !strings.Contains(got, "kyoto-pc-07") || strings.Contains(got, "kyoto-pc-08") {
		t.Errorf("non-compliant list: %q", got)
	}
	if got := text("#count-noncompliant .n"); got != "1" {
		t.Errorf("non-compliant count %q, want 1", got)
	}
	if got := text("#whoami"); !strings.Contains(got, "佐藤") {
		t.Errorf("signed in as %q", got)
	}
	shot("console-fleet.png")

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#attention a.host")),
		chromedp.WaitVisible(chromedp.ID("controls")),
	); err != nil {
		t.Fatalf("open device: %v", err)
	}
	if got := text("#device-state"); got != "非準拠" {
		t.Errorf("device state %q, want 非準拠", got)
	}
	// The raw evidence is folded under the control's summary (issue #19):
	// opened with a click on its summary, as a person would.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#controls details summary"))); err != nil {
		t.Fatalf("open the evidence: %v", err)
	}
	for sel, want := range map[string]string{"#controls": "read-only file system", "#events": "AA0123", "#why-sentence": "エージェント自己診断"} {
		if got := text(sel); !strings.Contains(got, want) {
			t.Errorf("%s: %q lacks %q", sel, got, want)
		}
	}
	shot("console-device.png")

	// The officer revokes through the real form (CSRF token, same-origin
	// POST from a real browser).
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("reason"), "盗難届 2026-11-25"),
		chromedp.Click(chromedp.CSS("#revoke-form button")),
		chromedp.WaitNotPresent(chromedp.ID("revoke-form")),
	); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if got := text("#device-state"); got != "失効" {
		t.Errorf("after revoke: state %q, want 失効", got)
	}
	// English through the toggle.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[hreflang="en"]`)), chromedp.WaitVisible(chromedp.ID("controls"))); err != nil {
		t.Fatalf("toggle: %v", err)
	}
	if got := text("#device-state"); got != "Revoked" {
		t.Errorf("English state %q, want Revoked", got)
	}

	// The officer approves an exception (例外措置) through the real form:
	// one USB stick on kyoto-pc-08 for tanaka, for two days. The expiry
	// field is a datetime-local input; its value is set as the browser's
	// picker would.
	expires := e.h.Clock.Now().Add(48 * time.Hour).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02T15:04")
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/exceptions"),
		chromedp.WaitVisible(chromedp.ID("exception-form")),
		chromedp.SendKeys(chromedp.ID("usb"), "0781:5581:4C530001231120115142"),
		chromedp.SendKeys(chromedp.ID("device"), "kyoto-pc-08"),
		chromedp.SendKeys(chromedp.ID("user"), "tanaka"),
		chromedp.SetValue(chromedp.ID("expires"), expires),
		chromedp.SendKeys(chromedp.ID("exc-reason"), "議会資料の受け渡し (申請 No.123)"),
		chromedp.Click(chromedp.ID("exception-submit")),
		chromedp.WaitVisible(chromedp.ID("exceptions-active")),
	); err != nil {
		t.Fatalf("approve an exception: %v", err)
	}
	if got := text("#exceptions-active"); !strings.Contains(got, "0781:5581:4C530001231120115142") || !strings.Contains(got, "kyoto-pc-08") ||
		!strings.Contains(got, "tanaka") || !strings.Contains(got, "in force") {
		t.Errorf("active exceptions: %q", got)
	}
	shot("console-exceptions.png")
	es, err := e.h.Srv.Store().ListExceptions(context.Background(), store.ExceptionFilter{})
	if err != nil || len(es) != 1 || es[0].User != "tanaka" || es[0].CreatedBy != e.officer.opID {
		t.Fatalf("stored exceptions: %+v %v", es, err)
	}
	if !e.hasAudit(t, e.officer.opID, "exception.create", es[0].ID) {
		t.Error("the approval is not in the audit log")
	}
	// The terminal's page shows it.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#exceptions-active a")), chromedp.WaitVisible(chromedp.ID("device-exceptions"))); err != nil {
		t.Fatalf("open the terminal of the exception: %v", err)
	}
	if got := text("#device-exceptions"); !strings.Contains(got, "4C530001231120115142") {
		t.Errorf("device page exceptions: %q", got)
	}

	// The officer edits the policy: the document in the advanced editor's
	// text area, the diff on the confirm page, then a new version — two
	// plain forms.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.h.ConsoleURL+"/policy/json"), chromedp.WaitVisible(chromedp.ID("policy-json"))); err != nil {
		t.Fatalf("open the policy editor: %v", err)
	}
	doc, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("policy-json")))
	if err != nil {
		t.Fatalf("open the policy editor: %v", err)
	}
	edited := strings.Replace(doc, `"report_interval": "60s"`, `"report_interval": "30s"`, 1)
	if edited == doc {
		t.Fatalf("report_interval not in the document:\n%s", doc)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("policy-json"), edited),
		chromedp.SendKeys(chromedp.ID("reason"), "報告間隔を 30 秒に"),
		chromedp.Click(chromedp.ID("policy-preview")),
		chromedp.WaitVisible(chromedp.ID("policy-diff")),
	); err != nil {
		t.Fatalf("preview the policy change: %v", err)
	}
	if got := text("#policy-diff"); !strings.Contains(got, `-   "report_interval": "60s"`) || !strings.Contains(got, `+   "report_interval": "30s"`) {
		t.Errorf("policy diff: %q", got)
	}
	shot("console-policy-diff.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("policy-save")), chromedp.WaitVisible(chromedp.ID("policy-history"))); err != nil {
		t.Fatalf("save the policy: %v", err)
	}
	cur, err := e.h.Srv.Store().CurrentPolicy(context.Background())
	if err != nil || cur.Version != 2 || cur.ReportInterval.AsDuration() != 30*time.Second {
		t.Fatalf("policy after the browser's save: %v %v", cur, err)
	}
	if got := text("#policy-version"); !strings.Contains(got, "2") {
		t.Errorf("policy page version %q", got)
	}

	// Then through the form: from the policy page to the editor, a new
	// override for the group 市民課 (typed into the scope form), USB
	// storage blocked there; the diff, confirm, and version 3.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("policy-edit")),
		chromedp.WaitVisible(chromedp.ID("policy-fields")),
		chromedp.SendKeys(chromedp.ID("new-group"), "市民課"),
		chromedp.Click(chromedp.ID("new-group-open")),
		chromedp.WaitVisible(chromedp.ID("group-help")),
	); err != nil {
		t.Fatalf("open the group's form: %v", err)
	}
	if got := text("#form-scope"); !strings.Contains(got, "市民課") {
		t.Errorf("form scope %q", got)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("mode-media"), "MODE_ENFORCE"),
		chromedp.SetValue(chromedp.ID("media-storage"), "block"),
		chromedp.SendKeys(chromedp.ID("reason"), "市民課は USB メモリを遮断"),
	); err != nil {
		t.Fatalf("fill the policy form: %v", err)
	}
	shot("console-policy-form.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("policy-preview")), chromedp.WaitVisible(chromedp.ID("policy-diff"))); err != nil {
		t.Fatalf("preview the form's change: %v", err)
	}
	if got := text("#policy-diff"); !strings.Contains(got, `+   "groups": {`) || !strings.Contains(got, `"市民課"`) || !strings.Contains(got, `"storage": "block"`) {
		t.Errorf("form diff: %q", got)
	}
	shot("console-policy-form-diff.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("policy-save")), chromedp.WaitVisible(chromedp.ID("policy-history"))); err != nil {
		t.Fatalf("save the form's change: %v", err)
	}
	if got := text("#policy-version"); !strings.Contains(got, "3") {
		t.Errorf("policy page version after the form %q", got)
	}
	cur, err = e.h.Srv.Store().CurrentPolicy(context.Background())
	if gm := cur.GetGroups()["市民課"].GetControls()["media"]; err != nil || cur.Version != 3 || gm.GetMode() != mamoriv1.Mode_MODE_ENFORCE ||
		gm.GetSettings()["storage"] != "block" || cur.ReportInterval.AsDuration() != 30*time.Second {
		t.Fatalf("policy after the form: %v %v", cur, err)
	}
	if !e.hasAudit(t, e.officer.opID, "policy.set", "3") {
		t.Error("the form's change is not audited")
	}

	// The officer imports the asset ledger: a Shift_JIS file as Excel
	// saves it, uploaded through the real multipart form.
	csvPath := filepath.Join(t.TempDir(), "台帳.csv")
	sjis := []byte("\x8e\x91\x8eY\x94\xd4\x8d\x86,\x83z\x83X\x83g\x96\xbc\r\nA-007,kyoto-pc-07\r\nA-009,kyoto-pc-09\r\n") // 資産番号,ホスト名
	if err := os.WriteFile(csvPath, sjis, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/ledger"),
		chromedp.WaitVisible(chromedp.ID("ledger-form")),
		chromedp.SetUploadFiles(chromedp.ID("ledger-file"), []string{csvPath}),
		chromedp.SendKeys(chromedp.ID("ledger-reason"), "2026年度 台帳"),
		chromedp.Submit(chromedp.ID("ledger-form")),
		// Only the page after the import says who imported it (the
		// page before already has a table: devices not in the ledger).
		chromedp.WaitVisible(chromedp.ID("ledger-imported")),
	); err != nil {
		t.Fatalf("import the ledger: %v", err)
	}
	got := text("#ledger")
	for _, want := range []string{"A-007", "kyoto-pc-07", "revoked", "A-009", "never enrolled", "kyoto-pc-08", "not in the ledger"} {
		if !strings.Contains(got, want) {
			t.Errorf("ledger table lacks %q: %q", want, got)
		}
	}
	shot("console-ledger.png")

	// Back to Japanese; the incidents page, then the audit evidence
	// report exported through the real form and printed to A4 PDF.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[hreflang="ja"]`)), chromedp.WaitVisible(chromedp.ID("ledger")),
		chromedp.Navigate(e.h.ConsoleURL+"/incidents"), chromedp.WaitVisible(chromedp.ID("incidents"))); err != nil {
		t.Fatalf("incidents page: %v", err)
	}
	if got := text("#incidents"); !strings.Contains(got, "kyoto-pc-07") || !strings.Contains(got, "端末が非準拠になった") {
		t.Errorf("incidents: %q", got)
	}
	shot("console-incidents.png")
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/evidence"), chromedp.WaitVisible(chromedp.ID("evidence-form")),
		chromedp.Click(chromedp.ID("report-html")),
		chromedp.WaitVisible(chromedp.ID("report-end")),
	); err != nil {
		t.Fatalf("evidence report: %v", err)
	}
	if got := text("#chain-result"); !strings.Contains(got, "改ざんなし") {
		t.Errorf("chain verification in the report: %q", got)
	}
	if got := text("#evidence"); !strings.Contains(got, "kyoto-pc-07") || !strings.Contains(got, "6(7)") {
		t.Errorf("report rows: %q", got)
	}
	if got := text("#clauses"); !strings.Contains(got, "6(3)①") || !strings.Contains(got, "持ち出し不可設定") {
		t.Errorf("clause mapping: %q", got)
	}
	shot("evidence-report.png")
	pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPreferCSSPageSize(), chromedp.PDFPrintBackground()))
	if err != nil {
		t.Fatalf("print the report: %v", err)
	}
	if !strings.HasPrefix(string(pdf), "%PDF-") || !regexp.MustCompile(`/MediaBox \[0 0 59[45]\.?\d* 84[12]`).Match(pdf) {
		t.Errorf("the printed report is not an A4 PDF (%d bytes)", len(pdf))
	}
	pp := filepath.Join(dir, "evidence-report.pdf")
	if err := os.WriteFile(pp, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("printed report: %s", pp)
}
