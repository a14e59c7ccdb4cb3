package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/incident"
)

// Watch configures the incident watcher (server/incident): daily
// compliance snapshots, detection of incidents from stored data, and the
// notification outbox. It runs in every server; steps of several servers
// on one PostgreSQL take turns and never duplicate an incident or a
// message.
type Watch struct {
	// Disabled turns the watcher off (no snapshots, no incidents).
	Disabled bool
	incident.Config

	// SMTP: relay host:port; From and To (comma-separated) addresses;
	// StartTLS; an optional user with the password in a file.
	SMTPAddr, SMTPFrom, SMTPTo string
	SMTPStartTLS               bool
	SMTPUser, SMTPPasswordFile string
	// Syslog: udp://host:port or tcp://host:port (RFC 5424).
	Syslog string
	// Webhook: an https:// (or http://) URL and the file holding the
	// HMAC-SHA256 key.
	Webhook, WebhookSecretFile string
}

// DefaultWatch: the watcher on, no channels.
func DefaultWatch() Watch { return Watch{Config: incident.DefaultConfig()} }

// loopbackHost reports whether h is localhost or a loopback IP.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func readSecret(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

// Channels builds the configured notification channels.
func (w Watch) Channels() ([]incident.Channel, error) {
	var chs []incident.Channel
	var errs []error
	if w.SMTPAddr != "" {
		host, _, err := net.SplitHostPort(w.SMTPAddr)
		if err != nil {
			errs = append(errs, fmt.Errorf("--notify-smtp %q: %w", w.SMTPAddr, err))
		}
		var to []string
		for _, a := range strings.Split(w.SMTPTo, ",") {
			if a = strings.TrimSpace(a); a != "" {
				to = append(to, a)
			}
		}
		if w.SMTPFrom == "" || len(to) == 0 {
			errs = append(errs, errors.New("--notify-smtp needs --notify-smtp-from and --notify-smtp-to"))
		}
		s := &incident.SMTP{Addr: w.SMTPAddr, From: w.SMTPFrom, To: to, StartTLS: w.SMTPStartTLS,
			TLS: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}, Username: w.SMTPUser}
		if w.SMTPUser != "" {
			if s.Password, err = readSecret(w.SMTPPasswordFile, "--notify-smtp-password-file"); err != nil {
				errs = append(errs, err)
			}
		}
		chs = append(chs, s)
	}
	if w.Syslog != "" {
		u, err := url.Parse(w.Syslog)
		if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--notify-syslog %q: want udp://host:port or tcp://host:port", w.Syslog))
		} else {
			chs = append(chs, &incident.Syslog{Network: u.Scheme, Addr: u.Host})
		}
	}
	if w.Webhook != "" {
		u, err := url.Parse(w.Webhook)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			errs = append(errs, fmt.Errorf("--notify-webhook: want an https:// URL"))
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			// Incidents name terminals and users: plain HTTP only to a relay
			// on this machine.
			errs = append(errs, fmt.Errorf("--notify-webhook %s: plain http:// only to a loopback address; use https://", u.Redacted()))
		}
		secret, err := readSecret(w.WebhookSecretFile, "--notify-webhook-secret-file")
		if err != nil {
			errs = append(errs, err)
		}
		chs = append(chs, &incident.Webhook{URL: w.Webhook, Secret: []byte(secret)})
	}
	return chs, errors.Join(errs...)
}

// startWatcher starts the incident watcher, if enabled.
func (s *Server) startWatcher(ctx context.Context) error {
	if s.cfg.Watch.Disabled {
		return nil
	}
	chs, err := s.cfg.Watch.Channels()
	if err != nil {
		return err
	}
	cfg := s.cfg.Watch.Config
	if cfg.ConsoleURL == "" && s.webLis != nil && len(s.cfg.Hosts) > 0 {
		_, port, _ := net.SplitHostPort(s.webLis.Addr().String())
		cfg.ConsoleURL = "https://" + net.JoinHostPort(s.cfg.Hosts[len(s.cfg.Hosts)-1], port)
	}
	now := s.cfg.Now
	if now == nil {
		now = time.Now
	}
	s.watcher, err = incident.New(s.store, cfg, chs, now, s.cfg.Log)
	if err != nil {
		return err
	}
	s.watcher.Start(ctx)
	return nil
}
