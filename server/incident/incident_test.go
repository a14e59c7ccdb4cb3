package incident_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/sqlite"
)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fleet struct {
	st  *sqlite.Store
	clk *clock
	n   int
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.SetPolicy(t.Context(), store.PolicyChange{Policy: policy.Default(), Actor: "test", At: t0}, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(t.Context(), store.Token{ID: "tok", Hash: []byte("token-hash-0000000000000000000000"), CreatedAt: t0, ExpiresAt: t0.Add(365 * 24 * time.Hour), Uses: 1000}); err != nil {
		t.Fatal(err)
	}
	return &fleet{st: st, clk: &clock{t: t0}}
}

func (f *fleet) enroll(t testing.TB, host string) store.Device {
	t.Helper()
	f.n++
	n := f.n
	res, err := f.st.Enroll(t.Context(), store.EnrollParams{TokenHash: []byte("token-hash-0000000000000000000000"), Now: f.clk.Now(),
		Facts: &mamoriv1.DeviceFacts{Hostname: host, MachineId: fmt.Sprintf("machine-%d", n), SerialNumber: fmt.Sprintf("SN-%04d", n)}, NewDeviceID: fmt.Sprintf("dev-%d", n),
		Sign: func(string) ([]byte, string, error) { return []byte("cert"), strconv.Itoa(n), nil }})
	if err != nil {
		t.Fatal(err)
	}
	return res.Device
}

func (f *fleet) report(t testing.TB, d store.Device, verdict string, evs ...*mamoriv1.Event) {
	t.Helper()
	res, err := f.st.IngestReports(t.Context(), []store.ReportInput{{DeviceID: d.ID, CertSerial: d.CertSerial, ReceivedAt: f.clk.Now(),
		Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Mode: mamoriv1.Mode_MODE_ENFORCE}},
		Events:   evs, PolicyVersion: 1, Verdict: verdict}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("report: %v %v", err, res)
	}
}

func blocked(n int, at time.Time) []*mamoriv1.Event {
	var evs []*mamoriv1.Event
	for i := range n {
		evs = append(evs, &mamoriv1.Event{Id: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), Time: timestamppb.New(at.Add(time.Duration(i) * time.Second)),
			Control: "media", Kind: "set_read_only", Attributes: map[string]string{"device": "sdb", "serial": "4C530001", "class": "usb-storage"}})
	}
	return evs
}

// --- listeners the test starts on 127.0.0.1 ---

// smtpServer is a minimal SMTP server: enough of RFC 5321 for net/smtp.
type smtpServer struct {
	addr string
	// tls, when set, offers STARTTLS and then AUTH PLAIN with user/pass.
	tls        *tls.Config
	user, pass string
	mu         sync.Mutex
	msgs       []string
	rcpt       []string
	tlsUsed    bool
	authed     bool
}

func startSMTP(t *testing.T) *smtpServer { return startSMTPWith(t, nil) }

func startSMTPWith(t *testing.T, cfg *tls.Config) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &smtpServer{addr: ln.Addr().String(), tls: cfg, user: "mamori", pass: "relay-password"}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "220 mail.test ESMTP\r\n")
	secure := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			switch {
			case s.tls != nil && !secure:
				fmt.Fprint(c, "250-mail.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
			case s.tls != nil:
				fmt.Fprint(c, "250-mail.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
			default:
				fmt.Fprint(c, "250-mail.test\r\n250 8BITMIME\r\n")
			}
		case cmd == "STARTTLS" && s.tls != nil && !secure:
			fmt.Fprint(c, "220 go ahead\r\n")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, secure = tc, bufio.NewReader(tc), true
			s.mu.Lock()
			s.tlsUsed = true
			s.mu.Unlock()
		case strings.HasPrefix(cmd, "AUTH PLAIN "):
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line[len("AUTH PLAIN "):]))
			if !secure || string(raw) != "\x00"+s.user+"\x00"+s.pass {
				fmt.Fprint(c, "535 authentication failed\r\n")
				continue
			}
			s.mu.Lock()
			s.authed = true
			s.mu.Unlock()
			fmt.Fprint(c, "235 ok\r\n")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			if s.tls != nil && !s.authed {
				fmt.Fprint(c, "530 authentication required\r\n")
				continue
			}
			fmt.Fprint(c, "250 OK\r\n")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			s.mu.Lock()
			s.rcpt = append(s.rcpt, strings.TrimSpace(line[len("RCPT TO:"):]))
			s.mu.Unlock()
			fmt.Fprint(c, "250 OK\r\n")
		case cmd == "DATA":
			fmt.Fprint(c, "354 go ahead\r\n")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, b.String())
			s.mu.Unlock()
			fmt.Fprint(c, "250 queued\r\n")
		case cmd == "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "502 not implemented\r\n")
		}
	}
}

func (s *smtpServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

type collector struct {
	mu   sync.Mutex
	msgs []string
}

func (c *collector) add(m string) { c.mu.Lock(); c.msgs = append(c.msgs, m); c.mu.Unlock() }
func (c *collector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func startUDPSyslog(t *testing.T) (string, *collector) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	col := &collector{}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			col.add(string(buf[:n]))
		}
	}()
	return pc.LocalAddr().String(), col
}

// startTCPSyslog reads RFC 6587 octet-counted frames.
func startTCPSyslog(t *testing.T) (string, *collector) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	col := &collector{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					ls, err := r.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimSpace(ls))
					if err != nil {
						col.add("BAD FRAME " + ls)
						return
					}
					b := make([]byte, n)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					col.add(string(b))
				}
			}()
		}
	}()
	return ln.Addr().String(), col
}

type hook struct {
	srv      *httptest.Server
	secret   []byte
	mu       sync.Mutex
	bodies   [][]byte
	badSigs  int
	failNext int
}

func startWebhook(t *testing.T) *hook {
	h := &hook{secret: []byte("webhook-secret-for-tests")}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			!incident.Verify(h.secret, r.Header.Get(incident.HeaderTimestamp), body, r.Header.Get(incident.HeaderSignature)) {
			h.badSigs++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if h.failNext > 0 {
			h.failNext--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		h.bodies = append(h.bodies, body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) received() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

type listeners struct {
	smtp           *smtpServer
	udp, tcp       *collector
	hook           *hook
	channels       []incident.Channel
	udpAddr, tAddr string
}

func startListeners(t *testing.T) *listeners {
	l := &listeners{smtp: startSMTP(t), hook: startWebhook(t)}
	l.udpAddr, l.udp = startUDPSyslog(t)
	l.tAddr, l.tcp = startTCPSyslog(t)
	l.channels = []incident.Channel{
		&incident.SMTP{Addr: l.smtp.addr, From: "mamori@example.lg.jp", To: []string{"soc@example.lg.jp", "ciso@example.lg.jp"}},
		&incident.Syslog{Network: "udp", Addr: l.udpAddr, Hostname: "mamori-1"},
		&incident.Syslog{Network: "tcp", Addr: l.tAddr, Hostname: "mamori-1"},
		&incident.Webhook{URL: l.hook.srv.URL, Secret: l.hook.secret},
	}
	return l
}

func (f *fleet) watcher(t *testing.T, cfg incident.Config, chs []incident.Channel) *incident.Watcher {
	t.Helper()
	w, err := incident.New(f.st, cfg, chs, f.clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestNoisyTerminalOneIncidentOneMessagePerChannel: 100 blocked writes on
// one terminal open one incident and send exactly one message on each of
// e-mail, syslog over UDP, syslog over TCP and the signed webhook — each
// really delivered to a listener on 127.0.0.1.
func TestNoisyTerminalOneIncidentOneMessagePerChannel(t *testing.T) {
	f := newFleet(t)
	l := startListeners(t)
	d := f.enroll(t, "市民課-noisy-01\r\nBcc: evil@example.com")
	cfg := incident.DefaultConfig()
	cfg.ConsoleURL = "https://console.test:8444"
	w := f.watcher(t, cfg, l.channels)

	// Four reports of 25 blocked writes each, a watcher step after each.
	all := blocked(100, f.clk.Now())
	for i := range 4 {
		f.report(t, d, store.VerdictCompliant, all[25*i:25*(i+1)]...)
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(10 * time.Second)
	}
	n, _ := f.st.CountEvents(t.Context(), d.ID)
	if n != 100 {
		t.Fatalf("%d events stored, want 100", n)
	}
	incs, err := f.st.Incidents(t.Context(), store.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 || incs[0].Rule != incident.RuleUSBBlocked || incs[0].Occurrences != 100 {
		t.Fatalf("incidents: %+v", incs)
	}
	waitFor(t, "a UDP syslog datagram", func() bool { return len(l.udp.all()) >= 1 })
	waitFor(t, "a TCP syslog frame", func() bool { return len(l.tcp.all()) >= 1 })
	// Give stragglers a moment: nothing more may arrive.
	time.Sleep(100 * time.Millisecond)
	if m := l.smtp.messages(); len(m) != 1 {
		t.Errorf("e-mails: %d, want 1", len(m))
	} else {
		if strings.Contains(m[0], "\r\nBcc:") {
			t.Errorf("agent hostname injected a mail header:\n%s", m[0])
		}
		if !strings.Contains(m[0], "Subject: =?utf-8?") || !strings.Contains(m[0], "https://console.test:8444/incidents/") {
			t.Errorf("mail lacks an encoded subject or the console link:\n%s", m[0])
		}
	}
	l.smtp.mu.Lock()
	nrcpt := len(l.smtp.rcpt)
	l.smtp.mu.Unlock()
	if got := nrcpt; got != 2 {
		t.Errorf("recipients: %d, want 2", got)
	}
	for name, col := range map[string]*collector{"udp": l.udp, "tcp": l.tcp} {
		ms := col.all()
		if len(ms) != 1 {
			t.Errorf("syslog %s: %d messages, want 1", name, len(ms))
			continue
		}
		if !strings.HasPrefix(ms[0], "<132>1 ") || !strings.Contains(ms[0], " mamori-1 mamori-server ") ||
			!strings.Contains(ms[0], `rule="usb-blocked"`) || strings.ContainsAny(ms[0], "\r\n") {
			t.Errorf("syslog %s message is not RFC 5424 as expected: %q", name, ms[0])
		}
	}
	bodies := l.hook.received()
	if len(bodies) != 1 || l.hook.badSigs != 0 {
		t.Fatalf("webhook: %d deliveries, %d bad signatures", len(bodies), l.hook.badSigs)
	}
	var p map[string]any
	if err := json.Unmarshal(bodies[0], &p); err != nil || p["rule"] != "usb-blocked" || p["kind"] != "open" || p["device_id"] != d.ID {
		t.Errorf("webhook payload: %s (%v)", bodies[0], err)
	}

	// More steps deliver nothing more.
	for range 3 {
		f.clk.Advance(time.Minute)
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if len(l.smtp.messages()) != 1 || len(l.udp.all()) != 1 || len(l.tcp.all()) != 1 || len(l.hook.received()) != 1 {
		t.Errorf("a later step sent again: mail %d udp %d tcp %d webhook %d", len(l.smtp.messages()), len(l.udp.all()), len(l.tcp.all()), len(l.hook.received()))
	}
}

// TestEscalationRetryRateLimit: an unacknowledged incident is notified
// once more after EscalateAfter; a webhook that fails is retried with
// back-off until it answers; over the hourly rate, messages are
// suppressed, not queued for later.
func TestEscalationRetryRateLimit(t *testing.T) {
	f := newFleet(t)
	l := startListeners(t)
	l.hook.failNext = 2
	cfg := incident.DefaultConfig()
	cfg.EscalateAfter = 30 * time.Minute
	cfg.RatePerHour = 3
	w := f.watcher(t, cfg, []incident.Channel{l.channels[3]})

	d := f.enroll(t, "term-01")
	f.report(t, d, store.VerdictNoncompliant)
	if err := w.Step(t.Context()); err != nil {
		t.Log("first delivery failed as arranged:", err)
	}
	if len(l.hook.received()) != 0 {
		t.Fatal("delivered despite a 503")
	}
	f.clk.Advance(31 * time.Second) // back-off after the first attempt is 30 s
	_ = w.Step(t.Context())         // second 503
	f.clk.Advance(61 * time.Second)
	if err := w.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(l.hook.received()) != 1 {
		t.Fatalf("after retries: %d deliveries, want 1", len(l.hook.received()))
	}
	// Not acknowledged for 30 minutes: one escalation, once.
	f.clk.Advance(30 * time.Minute)
	for range 2 {
		f.report(t, d, store.VerdictNoncompliant) // still reporting, still failing
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute)
	}
	got := l.hook.received()
	if len(got) != 2 || !strings.Contains(string(got[1]), `"kind":"escalate"`) {
		t.Fatalf("escalation: %d deliveries: %s", len(got), got)
	}
	// Rate: 3 per hour; two more devices fail -> one delivered, one suppressed.
	for _, h := range []string{"term-02", "term-03"} {
		f.report(t, f.enroll(t, h), store.VerdictNoncompliant)
	}
	if err := w.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(l.hook.received()); n != 3 {
		t.Errorf("with a rate of 3 per hour: %d deliveries, want 3", n)
	}
	incs, _ := f.st.Incidents(t.Context(), store.IncidentFilter{State: "active"})
	if len(incs) != 3 {
		t.Errorf("active incidents: %d, want 3 (suppressed messages still leave incidents)", len(incs))
	}
}

// TestCursorSurvivesRestart: a new watcher (a restarted or second server)
// over the same database opens nothing twice.
func TestCursorSurvivesRestart(t *testing.T) {
	f := newFleet(t)
	d := f.enroll(t, "term-01")
	f.report(t, d, store.VerdictNoncompliant, &mamoriv1.Event{Id: "11111111-0000-4000-8000-000000000001", Time: timestamppb.New(t0),
		Control: "login-mfa", Kind: "mfa_lockout", Attributes: map[string]string{"user": "suzuki"}})
	for range 3 {
		w := f.watcher(t, incident.DefaultConfig(), nil)
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	incs, _ := f.st.Incidents(t.Context(), store.IncidentFilter{})
	rules := map[string]int{}
	for _, in := range incs {
		rules[in.Rule]++
	}
	if len(incs) != 2 || rules[incident.RuleNoncompliant] != 1 || rules[incident.RuleMFALockout] != 1 {
		t.Errorf("incidents after three watchers: %v", rules)
	}
	recs, _ := f.st.ListAudit(t.Context(), 0, 1000)
	opens := 0
	for _, r := range recs {
		if r.Action == "incident.open" && r.Actor == "system" {
			opens++
		}
	}
	if opens != 2 {
		t.Errorf("%d incident.open audit records, want 2", opens)
	}
	hits, _ := f.st.SearchTerms(t.Context(), store.TermUser, "suz", 10)
	if len(hits) != 1 {
		t.Errorf("user search after the watcher: %v", hits)
	}
	hits, _ = f.st.SearchTerms(t.Context(), store.TermSerial, "SN-0001", 10)
	if len(hits) != 1 {
		t.Errorf("serial search after the watcher: %v", hits)
	}
	snaps, _ := f.st.DailySnapshots(t.Context(), "2026-01-01", "2026-12-31")
	if len(snaps) != 1 || snaps[0].Day != "2026-11-25" || snaps[0].Noncompliant != 1 {
		t.Errorf("daily snapshot: %+v", snaps)
	}
}

func TestSilentAgent(t *testing.T) {
	f := newFleet(t)
	d := f.enroll(t, "quiet-01")
	f.report(t, d, store.VerdictCompliant)
	w := f.watcher(t, incident.DefaultConfig(), nil)
	if err := w.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(11 * time.Minute) // default max report age: 10 minutes
	for range 2 {
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	incs, _ := f.st.Incidents(t.Context(), store.IncidentFilter{})
	if len(incs) != 1 || incs[0].Rule != incident.RuleAgentSilent {
		t.Fatalf("incidents: %+v", incs)
	}
}

// TestSilentAgentGroupMaxAge: a device in a group whose policy allows a
// longer silence (terminals switched off at night) is not "silent" under
// the base max report age; it is once its group's own age has passed.
func TestSilentAgentGroupMaxAge(t *testing.T) {
	f := newFleet(t)
	p := policy.Default()
	p.Groups = map[string]*mamoriv1.GroupPolicy{"窓口": {MaxReportAge: durationpb.New(time.Hour)}}
	if _, err := f.st.SetPolicy(t.Context(), store.PolicyChange{Policy: p, Actor: "test", At: t0}, 1); err != nil {
		t.Fatal(err)
	}
	night := f.enroll(t, "madoguchi-01")
	if _, err := f.st.SetDeviceGroup(t.Context(), night.ID, "窓口"); err != nil {
		t.Fatal(err)
	}
	night, _ = f.st.GetDevice(t.Context(), night.ID)
	other := f.enroll(t, "quiet-02")
	f.report(t, night, store.VerdictCompliant)
	f.report(t, other, store.VerdictCompliant)
	w := f.watcher(t, incident.DefaultConfig(), nil)
	step := func() {
		t.Helper()
		for range 2 {
			if err := w.Step(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	step()
	silentOn := func() map[string]bool {
		incs, err := f.st.Incidents(t.Context(), store.IncidentFilter{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, i := range incs {
			if i.Rule == incident.RuleAgentSilent {
				m[i.DeviceID] = true
			}
		}
		return m
	}
	f.clk.Advance(11 * time.Minute) // past the base 10 minutes, within the group's hour
	step()
	if got := silentOn(); !got[other.ID] || got[night.ID] {
		t.Fatalf("after 11 minutes silent incidents %v; want only %s", got, other.ID)
	}
	f.clk.Advance(time.Hour)
	step()
	if got := silentOn(); !got[night.ID] {
		t.Fatalf("after an hour and 11 minutes silent incidents %v; want %s too", got, night.ID)
	}
}

func TestJudge(t *testing.T) {
	ev := func(seq int64, control, kind string, attrs map[string]string) store.StoredEvent {
		return store.StoredEvent{Seq: seq, DeviceID: "d1", ReceivedAt: t0,
			Event: &mamoriv1.Event{Control: control, Kind: kind, Attributes: attrs, Time: timestamppb.New(t0)}}
	}
	for _, tc := range []struct {
		name  string
		ev    store.StoredEvent
		rule  string
		terms []string
	}{
		{"blocked write counts", ev(1, "media", "set_read_only", map[string]string{"serial": "S1"}), incident.RuleUSBBlocked, []string{"usb:S1"}},
		{"usb interface blocked", ev(2, "media", "usb_blocked", nil), incident.RuleUSBBlocked, nil},
		{"monitor mode blocks nothing", ev(3, "media", "would_block", map[string]string{"serial": "S2"}), "", []string{"usb:S2"}},
		{"mfa lock-out", ev(4, "login-mfa", "mfa_lockout", map[string]string{"user": "sato"}), incident.RuleMFALockout, []string{"user:sato"}},
		{"mfa failure alone", ev(5, "login-mfa", "mfa_failure", map[string]string{"user": "sato"}), "", []string{"user:sato"}},
		{"registry drift re-applied", ev(6, "media", "policy_drift", map[string]string{"reapplied": "true"}), incident.RulePolicyDrift, nil},
		{"media read-back re-applied", ev(12, "media", "reapplied", map[string]string{"device": "sdb", "problem": "sdb is writable"}), incident.RulePolicyDrift, nil},
		{"media still writable", ev(13, "media", "still_writable", map[string]string{"device": "sdb", "serial": "S9", "rounds": "2"}), incident.RuleMediaWritable, []string{"usb:S9"}},
		{"busy mount cut off counts as blocked", ev(14, "media", "writes_cut", map[string]string{"device": "sdb1", "serial": "S8"}), incident.RuleUSBBlocked, []string{"usb:S8"}},
		{"nftables re-applied", ev(7, "isolation", "ruleset_reapplied", nil), incident.RulePolicyDrift, nil},
		{"another tier reachable", ev(9, "isolation", "finding", map[string]string{"finding": "canary 172.31.0.1:443", "severity": "violation"}), incident.RuleTierReachable, nil},
		{"a degraded isolation finding", ev(10, "isolation", "finding", map[string]string{"finding": "interface usb0", "severity": "degraded"}), "", nil},
		{"serial outside media is no USB serial", ev(8, "agent", "x", map[string]string{"serial": "S3"}), "", nil},
		{"events dropped by a full spool", ev(9, "agent", "events_dropped", map[string]string{"count": "744", "reason": "file system full"}), incident.RuleEventsLost, nil},
		{"spool damaged", ev(10, "agent", "spool_damaged", map[string]string{"records_lost_estimate": "3"}), incident.RuleEventsLost, nil},
		{"events_dropped from another control is no spool drop", ev(11, "media", "events_dropped", nil), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			terms, sigs, err := incident.DefaultRules().Judge(store.WatchBatch{Now: t0.Add(time.Hour), Events: []store.StoredEvent{tc.ev}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, x := range terms {
				got = append(got, x.Kind+":"+x.Term)
			}
			if strings.Join(got, ",") != strings.Join(tc.terms, ",") {
				t.Errorf("terms %v, want %v", got, tc.terms)
			}
			rule := ""
			if len(sigs) == 1 {
				rule = sigs[0].Rule
			} else if len(sigs) > 1 {
				t.Fatalf("%d signals", len(sigs))
			}
			if rule != tc.rule {
				t.Errorf("rule %q, want %q", rule, tc.rule)
			}
			if rule == incident.RuleUSBBlocked && (sigs[0].Threshold != 5 || sigs[0].Window != 10*time.Minute) {
				t.Errorf("usb signal threshold %d window %s", sigs[0].Threshold, sigs[0].Window)
			}
		})
	}
}

// TestSMTPStartTLSAndAuth: the e-mail channel upgrades with STARTTLS
// (verifying the relay's certificate) and authenticates; without the
// relay's CA it refuses to send.
func TestSMTPStartTLSAndAuth(t *testing.T) {
	certSrv := httptest.NewTLSServer(http.NotFoundHandler()) // only for its 127.0.0.1 certificate
	certSrv.Close()
	srv := startSMTPWith(t, &tls.Config{Certificates: certSrv.TLS.Certificates, MinVersion: tls.VersionTLS12})
	pool := x509.NewCertPool()
	pool.AddCert(certSrv.Certificate())
	m := incident.Message{Kind: "open", Incident: store.Incident{ID: 7, Rule: incident.RuleMFALockout, DeviceID: "dev-1", Hostname: "窓口-03"}}
	ch := &incident.SMTP{Addr: srv.addr, From: "mamori@example.lg.jp", To: []string{"soc@example.lg.jp"}, StartTLS: true,
		TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, Username: "mamori", Password: "relay-password"}
	if err := ch.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	tlsUsed, authed := srv.tlsUsed, srv.authed
	srv.mu.Unlock()
	if got := srv.messages(); len(got) != 1 || !tlsUsed || !authed {
		t.Fatalf("messages %d, TLS %v, auth %v", len(got), tlsUsed, authed)
	}
	untrusted := *ch
	untrusted.TLS = &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if err := untrusted.Send(t.Context(), m); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("sent to a relay with an unknown certificate: %v", err)
	}
	wrong := *ch
	wrong.Password = "nope"
	if err := wrong.Send(t.Context(), m); err == nil {
		t.Error("sent with a wrong password")
	}
	if len(srv.messages()) != 1 {
		t.Errorf("messages: %d, want 1", len(srv.messages()))
	}
}

// TestOldEventsOpenNothing: events older than the horizon feed the search
// only.
func TestOldEventsOpenNothing(t *testing.T) {
	old := store.StoredEvent{Seq: 1, DeviceID: "d1", ReceivedAt: t0,
		Event: &mamoriv1.Event{Control: "login-mfa", Kind: "mfa_lockout", Attributes: map[string]string{"user": "sato"}, Time: timestamppb.New(t0)}}
	terms, sigs, err := incident.DefaultRules().Judge(store.WatchBatch{Now: t0.Add(25 * time.Hour), Events: []store.StoredEvent{old}})
	if err != nil || len(sigs) != 0 || len(terms) != 1 {
		t.Errorf("old event: %d signals, %d terms, %v", len(sigs), len(terms), err)
	}
}
