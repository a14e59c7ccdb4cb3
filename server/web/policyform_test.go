package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Handler tests of the policy form (policyform.go).

// formOf is what a browser would submit from the form with the given id:
// hidden and text inputs, checked boxes, the selected option of each
// select; no submit button.
func formOf(t *testing.T, body, id string) url.Values {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(n *html.Node, k string) (string, bool) {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val, true
			}
		}
		return "", false
	}
	var form *html.Node
	for n := range doc.Descendants() {
		if v, _ := attr(n, "id"); n.Type == html.ElementNode && n.Data == "form" && v == id {
			form = n
		}
	}
	if form == nil {
		t.Fatalf("no form %s in:\n%s", id, body)
	}
	vals := url.Values{}
	for n := range form.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		name, ok := attr(n, "name")
		if !ok {
			continue
		}
		switch n.Data {
		case "input":
			typ, _ := attr(n, "type")
			val, _ := attr(n, "value")
			if typ == "checkbox" {
				if _, on := attr(n, "checked"); on {
					vals.Add(name, val)
				}
				continue
			}
			vals.Add(name, val)
		case "select":
			first, chosen := "", ""
			for o := range n.Descendants() {
				if o.Type != html.ElementNode || o.Data != "option" {
					continue
				}
				v, _ := attr(o, "value")
				if first == "" {
					first = v
				}
				if _, sel := attr(o, "selected"); sel {
					chosen = v
				}
			}
			if chosen == "" {
				chosen = first
			}
			vals.Set(name, chosen)
		}
	}
	return vals
}

// seedPolicy stores a policy with settings the form does not show, an
// unknown key among them, and a group override; it returns it as stored.
func seedPolicy(t *testing.T, e *env) *mamoriv1.Policy {
	t.Helper()
	ctx := context.Background()
	p := policy.Default()
	p.Controls[policy.ControlMedia].Settings = map[string]string{"storage": "read-only", "x-future.key": "  kept\texactly  "}
	p.Controls[policy.ControlIsolation].Settings = map[string]string{"allowed_networks": "10.20.0.0/16", "canaries": "172.31.0.1:443, www.lgwan.example:80"}
	p.Controls[policy.ControlLoginMFA].Settings = map[string]string{"pam_config": "manual", "users": "*"}
	p.ReportInterval = durationpb.New(time.Minute)
	p.Groups = map[string]*mamoriv1.GroupPolicy{"本庁": {Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlAgent: {Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true, Settings: map[string]string{"require_tpm_key": "true"}}}}}
	cur, err := e.h.Srv.Store().CurrentPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := e.h.Srv.Store().SetPolicy(ctx, store.PolicyChange{Policy: p, Actor: e.officer.opID, Reason: "seed", At: e.h.Clock.Now()}, cur.Version)
	if err != nil {
		t.Fatal(err)
	}
	return saved
}

func currentPolicy(t *testing.T, e *env) *mamoriv1.Policy {
	t.Helper()
	cur, err := e.h.Srv.Store().CurrentPolicy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

var diffLineRE = regexp.MustCompile(`<span class="(add|del)">([^<]*)</span>`)

// changedLines are the + and - lines of a diff, unescaped.
func changedLines(body string) []string {
	var out []string
	for _, m := range diffLineRE.FindAllStringSubmatch(body, -1) {
		out = append(out, strings.Join(strings.Fields(html.UnescapeString(m[2])), " "))
	}
	return out
}

func TestPolicyFormPages(t *testing.T) {
	e := start(t)
	seedPolicy(t, e)
	for _, l := range []struct{ accept, want, mode string }{
		{"en", "Removable storage", "monitor"}, {"", "USB メモリ・外付けディスク・SD カード", "監視"},
	} {
		b := e.browser(t, l.accept)
		b.signIn(e.officer)
		for _, path := range []string{"/policy/edit", "/policy/edit?group=%E5%B8%82%E6%B0%91%E8%AA%B2", "/policy/json"} {
			p := b.get(path)
			if p.status != http.StatusOK || strings.Contains(p.body, "[console.") {
				t.Errorf("%q %s: %d, or a message missing\n%s", l.accept, path, p.status, p.body)
			}
		}
		p := b.get("/policy/edit")
		for _, want := range []string{l.want, l.mode, `<label for="mode-media">`, `<label for="media-storage">`, `<label for="mfa-grace">`,
			`<label for="report-interval">`, `<label for="reason">`, `for="allow-vendor-0"`, `name="csrf"`, `href="/policy/json"`} {
			if !strings.Contains(p.body, want) {
				t.Errorf("%q form lacks %q", l.accept, want)
			}
		}
		// Each POST form carries the session's token.
		for _, id := range []string{"policy-fields"} {
			if formOf(t, p.body, id).Get("csrf") == "" {
				t.Errorf("form %s has no CSRF token", id)
			}
		}
	}
	// A group scope offers "inherit", the base offers "off"; a group with
	// no override is new; the scope list names the policy's groups.
	b := e.browser(t, "en")
	b.signIn(e.officer)
	g := b.get("/policy/edit?group=" + url.QueryEscape("市民課"))
	f := formOf(t, g.body, "policy-fields")
	if f.Get("mode.media") != "inherit" || f.Get("group") != "市民課" || !strings.Contains(g.body, "no override yet") ||
		!strings.Contains(g.body, "replaces the base control whole") || !strings.Contains(g.body, `<option value="本庁">`) {
		t.Errorf("group form: %v\n%s", f, g.body)
	}
	base := formOf(t, b.get("/policy/edit").body, "policy-fields")
	if base.Get("mode.media") != "MODE_MONITOR" || base.Get("report_interval_n") != "1" || base.Get("report_interval_unit") != "m" ||
		base.Get("max_report_age_n") != "10" || base.Get("max_report_age_unit") != "m" ||
		base.Get("media.storage") != "read-only" || base.Get("media.mtp") != "block" || len(base["mfa.method"]) != 2 {
		t.Errorf("base form values: %v", base)
	}
}

func TestPolicyFormRefusals(t *testing.T) {
	e := start(t)
	seeded := seedPolicy(t, e)
	off := e.browser(t, "en")
	off.signIn(e.officer)
	page := off.get("/policy/edit")
	good := formOf(t, page.body, "policy-fields")
	good.Set("reason", "test")

	// Helpdesk: no form, no submission, audited.
	hd := e.browser(t, "en")
	hd.signIn(e.helpdesk)
	for _, path := range []string{"/policy/edit", "/policy/edit?group=x", "/policy/json"} {
		if p := hd.get(path); p.status != http.StatusForbidden {
			t.Errorf("helpdesk GET %s: %d", path, p.status)
		}
	}
	hf := url.Values{}
	for k, v := range good {
		hf[k] = v
	}
	hf.Set("csrf", csrfOf(t, hd.get("/policy")))
	hf.Set("report_interval_n", "30")
	hf.Set("report_interval_unit", "s")
	if p := hd.post("/policy/form", hf); p.status != http.StatusForbidden {
		t.Errorf("helpdesk POST /policy/form: %d", p.status)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "console.denied", "POST /policy/form") {
		t.Error("the helpdesk's refused POST is not audited")
	}
	// Missing or wrong CSRF token.
	for name, tok := range map[string]string{"missing": "", "wrong": "x" + good.Get("csrf")} {
		f := url.Values{}
		for k, v := range good {
			f[k] = v
		}
		f.Set("report_interval_n", "30")
		f.Set("report_interval_unit", "s")
		if tok == "" {
			f.Del("csrf")
		} else {
			f.Set("csrf", tok)
		}
		if p := off.post("/policy/form", f); p.status != http.StatusForbidden {
			t.Errorf("%s CSRF: %d", name, p.status)
		}
	}

	for _, tc := range []struct {
		name string
		mod  func(url.Values)
		want string
	}{
		{"bad duration", func(f url.Values) { f.Set("report_interval_n", "soon") }, `Report interval: &#34;soon&#34; is not a duration`},
		{"negative duration", func(f url.Values) { f.Set("max_report_age_n", "-5") }, "is not a duration"},
		{"interval out of range", func(f url.Values) { f.Set("report_interval_n", "1"); f.Set("report_interval_unit", "s") }, "Report interval 1s: must be between 5s and 24h"},
		{"max age too short", func(f url.Values) { f.Set("max_report_age_n", "90"); f.Set("max_report_age_unit", "s") }, "must be at least twice the report interval (2m)"},
		{"base duration missing", func(f url.Values) { f.Set("report_interval_n", "") }, "needs both a report interval"},
		{"unknown mode", func(f url.Values) { f.Set("mode.media", "MODE_UNSPECIFIED") }, "Control media: &#34;MODE_UNSPECIFIED&#34; is not a mode"},
		{"inherit in the base", func(f url.Values) { f.Set("mode.agent", "inherit") }, "Control agent: &#34;inherit&#34; is not a mode"},
		{"mtp read-only", func(f url.Values) { f.Set("media.mtp", "read-only") }, "Phones and cameras (MTP/PTP): &#34;read-only&#34; is not an action"},
		{"allow-list vendor", func(f url.Values) {
			f.Set("allow.vendor.0", "zz")
			f.Set("allow.product.0", "5581")
			f.Set("allow.serial.0", "A1")
		}, "Allow-list row 1"},
		{"allow-list serial with a space", func(f url.Values) {
			f.Set("allow.vendor.0", "0781")
			f.Set("allow.product.0", "5581")
			f.Set("allow.serial.0", "A 1")
		}, "Allow-list row 1"},
		{"no MFA method", func(f url.Values) { f.Del("mfa.method") }, "Choose at least one second factor"},
		{"unknown MFA method", func(f url.Values) { f.Add("mfa.method", "sms") }, "&#34;sms&#34; is not a second-factor method"},
		{"grace out of range", func(f url.Values) { f.Set("mfa.grace_until", "2150-04-01") }, "Grace period &#34;2150-04-01&#34;"},
		{"grace not a date", func(f url.Values) { f.Set("mfa.grace_until", "next spring") }, "Grace period &#34;next spring&#34;"},
		{"PAM service", func(f url.Values) { f.Set("mfa.services", "login,ssh d") }, "PAM service &#34;ssh d&#34;"},
		{"oversized services", func(f url.Values) { f.Set("mfa.services", strings.Repeat("sshd,", 500)) }, "PAM services checked is too long"},
		{"oversized grace", func(f url.Values) { f.Set("mfa.grace_until", strings.Repeat("9", 300)) }, "Grace period until is too long"},
		{"oversized duration", func(f url.Values) { f.Set("report_interval_n", strings.Repeat("9", 300)) }, "is not a duration"},
		{"unknown unit", func(f url.Values) { f.Set("report_interval_unit", "d") }, "Report interval: &#34;1?&#34; is not a duration"},
		{"no reason", func(f url.Values) { f.Set("reason", "") }, "reason"},
		{"oversized reason", func(f url.Values) { f.Set("reason", strings.Repeat("理", 400)) }, "reason"},
		{"bidi group name", func(f url.Values) { f.Set("group", "市民課\u202etxt.exe") }, "without control or format characters"},
		{"control character in a group name", func(f url.Values) { f.Set("group", "a\x01b") }, "without control or format characters"},
		{"group name with a trailing space", func(f url.Values) { f.Set("group", "市民課 ") }, "leading or trailing spaces"},
		{"oversized group name", func(f url.Values) { f.Set("group", strings.Repeat("課", 65)) }, "1 to 64 characters"},
		{"allow.rows not a number", func(f url.Values) {
			f.Set("allow.rows", "many")
			f.Set("report_interval_n", "30")
			f.Set("report_interval_unit", "s")
		}, "The form was incomplete"},
		{"stale version", func(f url.Values) {
			f.Set("expected", "1")
			f.Set("report_interval_n", "30")
			f.Set("report_interval_unit", "s")
		}, "changed while you edited"},
		{"nothing changed", func(url.Values) {}, "Nothing changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range good {
				f[k] = append([]string(nil), v...)
			}
			tc.mod(f)
			p := off.post("/policy/form", f)
			if p.status != http.StatusBadRequest || !strings.Contains(p.body, tc.want) {
				t.Errorf("%d, want 400 with %q\n%s", p.status, tc.want, p.body)
			}
			if strings.Contains(p.body, "\u202e") {
				t.Error("a bidi control is echoed raw")
			}
			if cur := currentPolicy(t, e); !proto.Equal(cur, seeded) {
				t.Errorf("stored a policy: version %d", cur.Version)
			}
		})
	}
	// A hostile group name in the URL: the base form, with the message.
	p := off.get("/policy/edit?group=" + url.QueryEscape("市民課\u202etxt.exe"))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "without control or format characters") || strings.Contains(p.body, "\u202e") {
		t.Errorf("hostile group in the URL: %d\n%s", p.status, p.body)
	}
}

func TestPolicyFormSave(t *testing.T) {
	e := start(t)
	seeded := seedPolicy(t, e)
	d := e.device(t, "pc-shimin-01", healthy())
	if _, err := e.h.Srv.Store().SetDeviceGroup(context.Background(), d.ID, "市民課"); err != nil {
		t.Fatal(err)
	}
	off := e.browser(t, "en")
	off.signIn(e.officer)

	// The base: the report interval from 1m to 30s. The diff has exactly
	// that line changed.
	ed := off.get("/policy/edit")
	if !strings.Contains(ed.body, `<option value="市民課">`) {
		t.Error("the scope list lacks the devices' group")
	}
	f := formOf(t, ed.body, "policy-fields")
	f.Set("report_interval_n", "30")
	f.Set("report_interval_unit", "s")
	f.Set("reason", "報告間隔を 30 秒に")
	pv := off.post("/policy/form", f)
	if pv.status != http.StatusOK {
		t.Fatalf("preview: %d\n%s", pv.status, pv.body)
	}
	got := changedLines(pv.body)
	if len(got) != 2 || got[0] != `- "report_interval": "60s",` || got[1] != `+ "report_interval": "30s",` {
		t.Errorf("diff lines: %q", got)
	}
	if !strings.Contains(pv.body, `href="/policy/edit"`) {
		t.Error("the confirm page does not lead back to the form")
	}
	if currentPolicy(t, e).Version != seeded.Version {
		t.Fatal("the preview saved")
	}
	sv := off.post("/policy", hiddenFields(t, pv.body, "policy-save-form"))
	n := seeded.Version + 1
	if sv.status != http.StatusSeeOther || sv.loc != "/policy#v3" {
		t.Fatalf("save: %d %q", sv.status, sv.loc)
	}
	if !e.hasAudit(t, e.officer.opID, "policy.set", "3") {
		t.Error("policy.set not audited")
	}
	want := proto.Clone(seeded).(*mamoriv1.Policy)
	want.Version, want.ReportInterval = n, durationpb.New(30*time.Second)
	cur := currentPolicy(t, e)
	if !proto.Equal(cur, want) {
		t.Errorf("saved policy differs beyond report_interval:\n got %v\nwant %v", cur, want)
	}
	if v := cur.Controls["media"].Settings["x-future.key"]; v != "  kept\texactly  " {
		t.Errorf("unknown setting: %q", v)
	}

	// A group: media enforced with USB storage blocked and one stick
	// allowed; the override starts from the base control.
	gp := off.get("/policy/edit?group=" + url.QueryEscape("市民課"))
	f = formOf(t, gp.body, "policy-fields")
	f.Set("mode.media", "MODE_ENFORCE")
	f.Set("required.media", "on")
	f.Set("media.storage", "block")
	f.Set("allow.vendor.0", "0781")
	f.Set("allow.product.0", "5581")
	f.Set("allow.serial.0", "4C530001231120115142")
	f.Set("reason", "市民課は USB 遮断")
	pv = off.post("/policy/form", f)
	if pv.status != http.StatusOK {
		t.Fatalf("group preview: %d\n%s", pv.status, pv.body)
	}
	for _, line := range changedLines(pv.body) {
		if !strings.HasPrefix(line, "+") {
			t.Errorf("a group override only adds lines; got %q", line)
		}
	}
	if sv := off.post("/policy", hiddenFields(t, pv.body, "policy-save-form")); sv.status != http.StatusSeeOther {
		t.Fatalf("group save: %d\n%s", sv.status, sv.body)
	}
	cur = currentPolicy(t, e)
	gm := cur.Groups["市民課"].GetControls()["media"]
	wantSettings := map[string]string{"storage": "block", "x-future.key": "  kept\texactly  ", "allow": "0781:5581:4C530001231120115142"}
	if cur.Version != n+1 || gm.GetMode() != mamoriv1.Mode_MODE_ENFORCE || !gm.GetRequired() || len(gm.GetSettings()) != len(wantSettings) {
		t.Fatalf("group override: %v", cur.Groups["市民課"])
	}
	for k, v := range wantSettings {
		if gm.Settings[k] != v {
			t.Errorf("group media %s = %q, want %q", k, gm.Settings[k], v)
		}
	}
	if !proto.Equal(cur.Groups["本庁"], seeded.Groups["本庁"]) || len(cur.Groups) != 2 || !proto.Equal(cur.Controls["media"], seeded.Controls["media"]) {
		t.Errorf("other parts changed: %v", cur)
	}

	// More rows, then removing the allow-list entry: kept in the form.
	gp = off.get("/policy/edit?group=" + url.QueryEscape("市民課"))
	f = formOf(t, gp.body, "policy-fields")
	if f.Get("allow.vendor.0") != "0781" || f.Get("media.storage") != "block" || f.Get("mode.media") != "MODE_ENFORCE" {
		t.Errorf("group form after save: %v", f)
	}
	f.Set("more-rows", "1")
	if p := off.post("/policy/form", f); p.status != http.StatusOK || !strings.Contains(p.body, `id="allow-vendor-6"`) {
		t.Errorf("more rows: %d", p.status)
	}
	f.Del("more-rows")
	f.Set("allow.remove.0", "on")
	f.Set("reason", "許可リストを空に")
	pv = off.post("/policy/form", f)
	if got := changedLines(pv.body); pv.status != http.StatusOK || len(got) != 1 || !strings.Contains(got[0], `"allow"`) {
		t.Errorf("remove the entry: %d %q", pv.status, got)
	}

	// Back to "inherit": the override, and with it the group, is gone.
	f.Del("allow.remove.0")
	f.Set("mode.media", "inherit")
	f.Set("reason", "市民課も基本ポリシーに戻す")
	pv = off.post("/policy/form", f)
	if pv.status != http.StatusOK {
		t.Fatalf("inherit preview: %d\n%s", pv.status, pv.body)
	}
	if sv := off.post("/policy", hiddenFields(t, pv.body, "policy-save-form")); sv.status != http.StatusSeeOther {
		t.Fatalf("inherit save: %d\n%s", sv.status, sv.body)
	}
	cur = currentPolicy(t, e)
	if _, ok := cur.Groups["市民課"]; ok || len(cur.Groups) != 1 || cur.Version != n+2 {
		t.Errorf("after inherit: version %d groups %v", cur.Version, cur.Groups)
	}
	want.Version = n + 2
	if !proto.Equal(cur, want) {
		t.Errorf("the document is not back to the first save's:\n got %v\nwant %v", cur, want)
	}
	if !e.hasAudit(t, e.officer.opID, "policy.set", "5") {
		t.Error("policy.set of version 5 not audited")
	}
	// A group duration: set, then inherit again.
	f = formOf(t, off.get("/policy/edit?group="+url.QueryEscape("本庁")).body, "policy-fields")
	if f.Get("report_interval_n") != "" || f.Get("mode.agent") != "MODE_ENFORCE" {
		t.Errorf("本庁 form: %v", f)
	}
	f.Set("report_interval_n", "6")
	f.Set("report_interval_unit", "m")
	f.Set("reason", "r")
	pv = off.post("/policy/form", f)
	if pv.status != http.StatusBadRequest || !strings.Contains(pv.body, "at least twice the report interval (12m)") {
		t.Errorf("group interval against the base's max age: %d", pv.status)
	}
	f.Set("max_report_age_n", "1")
	f.Set("max_report_age_unit", "h")
	pv = off.post("/policy/form", f)
	if got := strings.Join(changedLines(pv.body), "\n"); pv.status != http.StatusOK || !strings.Contains(got, `+ "report_interval": "360s"`) ||
		!strings.Contains(got, `+ "max_report_age": "3600s"`) || strings.Contains(got, "agent") {
		t.Errorf("group durations: %d %q", pv.status, got)
	}
	if sv := off.post("/policy", hiddenFields(t, pv.body, "policy-save-form")); sv.status != http.StatusSeeOther {
		t.Fatalf("group durations save: %d\n%s", sv.status, sv.body)
	}
	if g := currentPolicy(t, e).Groups["本庁"]; g.GetReportInterval().AsDuration() != 6*time.Minute || g.GetMaxReportAge().AsDuration() != time.Hour {
		t.Errorf("本庁 durations: %v", g)
	}
	f = formOf(t, off.get("/policy/edit?group="+url.QueryEscape("本庁")).body, "policy-fields")
	f.Set("report_interval_n", "")
	f.Set("max_report_age_n", "")
	f.Set("reason", "r")
	pv = off.post("/policy/form", f)
	if sv := off.post("/policy", hiddenFields(t, pv.body, "policy-save-form")); sv.status != http.StatusSeeOther {
		t.Fatalf("group durations inherit: %d\n%s", sv.status, pv.body)
	}
	if g := currentPolicy(t, e).Groups["本庁"]; !proto.Equal(g, seeded.Groups["本庁"]) {
		t.Errorf("本庁 after inheriting the durations again: %v", g)
	}
}
