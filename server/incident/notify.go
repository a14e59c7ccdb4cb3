package incident

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/server/store"
)

// Message is what a channel sends about one incident.
type Message struct {
	Kind     string // "open" or "escalate"
	Incident store.Incident
	// Link is the incident's console page, when the console's URL is known.
	Link string
	// Note is added by the notifier, e.g. how many messages the rate
	// limit suppressed.
	Note string
}

// Subject is a one-line summary, safe for a mail header.
func (m Message) Subject() string {
	what := "opened"
	if m.Kind == "escalate" {
		what = "not acknowledged (escalated)"
	}
	return oneLine(fmt.Sprintf("[mamori] incident #%d %s: %s on %s", m.Incident.ID, what, m.Incident.Rule, hostOrID(m.Incident)))
}

func hostOrID(in store.Incident) string {
	if in.Hostname != "" {
		return in.Hostname
	}
	return in.DeviceID
}

// Text is the plain-text body.
func (m Message) Text() string {
	in := m.Incident
	var b strings.Builder
	fmt.Fprintf(&b, "インシデント / Incident #%d (%s)\n", in.ID, m.Kind)
	fmt.Fprintf(&b, "rule: %s\n", in.Rule)
	fmt.Fprintf(&b, "device: %s (%s)\n", oneLine(in.Hostname), in.DeviceID)
	fmt.Fprintf(&b, "summary: %s\n", oneLine(summaryBoth(in)))
	fmt.Fprintf(&b, "occurrences: %d\n", in.Occurrences)
	fmt.Fprintf(&b, "opened: %s\n", in.OpenedAt.UTC().Format(time.RFC3339))
	if m.Link != "" {
		fmt.Fprintf(&b, "console: %s\n", m.Link)
	}
	if m.Note != "" {
		fmt.Fprintf(&b, "note: %s\n", m.Note)
	}
	return b.String()
}

// payload is the webhook's JSON.
type payload struct {
	Kind     string `json:"kind"`
	ID       int64  `json:"id"`
	Rule     string `json:"rule"`
	DeviceID string `json:"device_id"`
	Hostname string `json:"hostname"`
	State    string `json:"state"`
	Summary  string `json:"summary"`
	// SummaryID and SummaryArgs: the summary as a catalogue message
	// (store.IncidentMsg), for a receiver that renders its own language;
	// absent for incidents opened before.
	SummaryID   string    `json:"summary_id,omitempty"`
	SummaryArgs []string  `json:"summary_args,omitempty"`
	Occurrences int64     `json:"occurrences"`
	OpenedAt    time.Time `json:"opened_at"`
	LastAt      time.Time `json:"last_at"`
	Link        string    `json:"link,omitempty"`
	Note        string    `json:"note,omitempty"`
}

// JSON is the webhook body.
func (m Message) JSON() []byte {
	in := m.Incident
	b, _ := json.Marshal(payload{Kind: m.Kind, ID: in.ID, Rule: in.Rule, DeviceID: in.DeviceID, Hostname: in.Hostname,
		State: in.State, Summary: summaryBoth(in), SummaryID: in.SummaryMsg.ID, SummaryArgs: in.SummaryMsg.Args, Occurrences: in.Occurrences, OpenedAt: in.OpenedAt.UTC(), LastAt: in.LastAt.UTC(),
		Link: m.Link, Note: m.Note})
	return b
}

// oneLine: agent data may carry CR/LF meant to inject headers or log
// lines, and bidi overrides meant to disguise a name.
var oneLine = textsafe.OneLine

// Channel delivers messages somewhere.
type Channel interface {
	Name() string
	Send(ctx context.Context, m Message) error
}

// SMTP sends e-mail through a relay with net/smtp.
type SMTP struct {
	Addr string // host:port
	From string
	To   []string
	// StartTLS upgrades the connection (required when Username is set on
	// a non-loopback relay); TLS verifies the relay's certificate.
	StartTLS bool
	TLS      *tls.Config
	Username string
	Password string
	Timeout  time.Duration
}

func (s *SMTP) Name() string { return "email" }

func (s *SMTP) Send(ctx context.Context, m Message) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", s.Addr, err)
	}
	defer c.Close()
	if s.StartTLS {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("smtp %s: STARTTLS: %w", s.Addr, err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return fmt.Errorf("smtp %s: auth: %w", s.Addr, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", s.Addr, err)
	}
	for _, to := range s.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp %s: RCPT TO %s: %w", s.Addr, to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", s.Addr, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", s.From, strings.Join(s.To, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.BEncoding.Encode("utf-8", m.Subject()))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.Text(), "\n", "\r\n"))
	if _, err := w.Write([]byte(b.String())); err != nil {
		return fmt.Errorf("smtp %s: %w", s.Addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: end of DATA: %w", s.Addr, err)
	}
	return c.Quit()
}

// Syslog sends RFC 5424 messages over UDP (one datagram each) or TCP
// (RFC 6587 octet counting).
type Syslog struct {
	Network string // "udp" or "tcp"
	Addr    string
	// Hostname is the HOSTNAME field; os.Hostname when empty.
	Hostname string
	Timeout  time.Duration
}

func (s *Syslog) Name() string { return "syslog-" + s.Network }

// syslogPRI: facility local0 (16), severity warning (4).
const syslogPRI = 16*8 + 4

func sdEscape(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)
	return r.Replace(oneLine(v))
}

// Format is the RFC 5424 message.
func (s *Syslog) Format(m Message, now time.Time) []byte {
	host := s.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "-"
	}
	in := m.Incident
	sd := fmt.Sprintf(`[mamori@32473 id="%d" kind="%s" rule="%s" device="%s" hostname="%s" occurrences="%d"]`,
		in.ID, sdEscape(m.Kind), sdEscape(in.Rule), sdEscape(in.DeviceID), sdEscape(in.Hostname), in.Occurrences)
	msg := fmt.Sprintf("<%d>1 %s %s mamori-server %d incident %s \ufeff%s", syslogPRI,
		now.UTC().Format("2006-01-02T15:04:05.000000Z"), strings.ReplaceAll(oneLine(host), " ", "_"), os.Getpid(), sd, m.Subject())
	return []byte(msg)
}

func (s *Syslog) Send(ctx context.Context, m Message) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, s.Network, s.Addr)
	if err != nil {
		return fmt.Errorf("syslog: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	msg := s.Format(m, time.Now())
	if s.Network == "tcp" {
		msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	}
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("syslog %s %s: %w", s.Network, s.Addr, err)
	}
	return nil
}

// Webhook POSTs the JSON payload, signed with HMAC-SHA256.
type Webhook struct {
	URL    string
	Secret []byte
	Client *http.Client
}

// Signature headers. The signature is hex(HMAC-SHA256(secret, timestamp
// + "." + body)), so a receiver can also refuse old replays.
const (
	HeaderSignature = "X-Mamori-Signature"
	HeaderTimestamp = "X-Mamori-Timestamp"
)

// Sign computes the signature header value.
func Sign(secret []byte, ts string, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

// Verify checks a signature header in constant time.
func Verify(secret []byte, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

func (w *Webhook) Name() string { return "webhook" }

func (w *Webhook) Send(ctx context.Context, m Message) error {
	body := m.JSON()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token in its query
		}
		return fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: answered %s", resp.Status)
	}
	return nil
}
