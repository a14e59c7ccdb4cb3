// Command mamori-server is mamori's central server: it enrols terminals,
// records their compliance, and serves mamorictl.
//
//	mamori-server serve --data DIR [--db postgres://…] [--listen :8443] [--host NAME]...
//	mamori-server operator create --data DIR --name NAME --role helpdesk|officer|admin [--password-file F [--login L]] [--api-token TOKEN-NAME]
//	mamori-server operator token --data DIR --operator NAME|ID --name TOKEN-NAME [--expires 30d]
//	mamori-server version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mamori-dev/mamori/internal/buildinfo"
	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/serve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error {
	*h = append(*h, v)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	p := i18n.NewPrinter(i18n.LangFromEnv(os.Getenv))
	if len(args) == 0 {
		fmt.Fprintln(stderr, p.Sprintf("server.usage"))
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr, p)
	case "operator":
		return cmdOperator(ctx, args[1:], stdout, stderr, p)
	case "version":
		fmt.Fprintln(stdout, "mamori-server", buildinfo.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, p.Sprintf("server.usage"))
		return 0
	}
	fmt.Fprintln(stderr, p.Sprintf("server.usage"))
	return 2
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, p *i18n.Printer) int {
	cfg := serve.DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (CA, certificates, SQLite database)")
	fs.StringVar(&cfg.DB, "db", "", "postgres:// URL; empty for the embedded SQLite")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "agents' gRPC listen address (enrolment, reports)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "admin API gRPC listen address (mamorictl, operator tokens); keep terminals' networks off it")
	fs.StringVar(&cfg.Console, "console", "", "web console HTTPS address, e.g. :8444 (empty: no console)")
	fs.DurationVar(&cfg.ConsoleConfig.IdleTimeout, "console-idle-timeout", cfg.ConsoleConfig.IdleTimeout, "end a console session after this long without a request")
	var hosts hostList
	fs.Var(&hosts, "host", "a name or address agents use to reach this server (repeatable; goes into the TLS certificate)")
	fs.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "on first start, write the admin token to this file (0600) instead of printing it")
	fs.StringVar(&cfg.EKRootsFile, "ek-roots", "", "PEM file of TPM manufacturer CAs: a TPM key is attested only when its EK certificate chains to one, or its EK is approved (mamorictl tpm approve-ek); docs/tpm.md")
	fs.IntVar(&cfg.Ingest.MaxBatch, "ingest-batch", cfg.Ingest.MaxBatch, "most reports committed in one transaction")
	fs.IntVar(&cfg.Ingest.Workers, "ingest-workers", cfg.Ingest.Workers, "transactions in flight at once (1 for SQLite; more help PostgreSQL)")
	fs.Float64Var(&cfg.EnrollLimits.PerSourceRate, "enroll-per-source-rate", cfg.EnrollLimits.PerSourceRate, "enrolments a second from one address (IPv6: one /64); 0: no limit")
	fs.IntVar(&cfg.EnrollLimits.PerSourceBurst, "enroll-per-source-burst", cfg.EnrollLimits.PerSourceBurst, "enrolments one address may make at once before the rate applies")
	fs.Float64Var(&cfg.EnrollLimits.FailedTokenRate, "enroll-failed-token-rate", cfg.EnrollLimits.FailedTokenRate, "enrolments with a wrong token a second per source address, past the burst; 0: no limit")
	fs.IntVar(&cfg.EnrollLimits.FailedTokenBurst, "enroll-failed-token-burst", cfg.EnrollLimits.FailedTokenBurst, "enrolments with a wrong token one address may make before it is refused")
	fs.Float64Var(&cfg.EnrollLimits.PerTokenRate, "enroll-per-token-rate", cfg.EnrollLimits.PerTokenRate, "enrolments a second per valid enrolment token; 0: no limit")
	fs.IntVar(&cfg.EnrollLimits.PerTokenBurst, "enroll-per-token-burst", cfg.EnrollLimits.PerTokenBurst, "enrolments one token may make at once before the rate applies")
	fs.Float64Var(&cfg.EnrollLimits.RenewRate, "renew-rate", cfg.EnrollLimits.RenewRate, "certificate renewals a second per device; 0: no limit")
	fs.IntVar(&cfg.EnrollLimits.RenewBurst, "renew-burst", cfg.EnrollLimits.RenewBurst, "renewals one device may make at once before the rate applies")
	fs.IntVar(&cfg.EnrollLimits.MaxInFlight, "enroll-max-in-flight", cfg.EnrollLimits.MaxInFlight, "enrolments worked on at once; more are refused at once (ResourceExhausted, retry hint); 0: no cap")
	fs.IntVar(&cfg.EnrollLimits.MaxQueued, "enroll-max-queued", cfg.EnrollLimits.MaxQueued, "enrolments that may wait for a place in flight; more are refused at once")
	fs.DurationVar(&cfg.EnrollLimits.QueueWait, "enroll-queue-wait", cfg.EnrollLimits.QueueWait, "longest an enrolment waits for a place in flight before it is refused")
	fs.DurationVar(&cfg.EnrollLimits.RetryAfter, "enroll-retry-after", cfg.EnrollLimits.RetryAfter, "least wait a refused enrolment is asked to keep")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "on stop, how long calls in progress may take before connections are closed")
	// Incidents and notifications (docs/console.md).
	w := &cfg.Watch
	fs.BoolVar(&w.Disabled, "no-watch", false, "do not run the incident watcher (daily snapshots, incidents, notifications) in this server")
	fs.DurationVar(&w.Interval, "watch-interval", w.Interval, "how often the incident watcher runs")
	fs.IntVar(&w.Rules.USBThreshold, "incident-usb-threshold", w.Rules.USBThreshold, "blocked removable-media writes on one terminal that open an incident…")
	fs.DurationVar(&w.Rules.USBWindow, "incident-usb-window", w.Rules.USBWindow, "…within this time")
	fs.DurationVar(&w.EscalateAfter, "incident-escalate-after", w.EscalateAfter, "notify again when an incident is not acknowledged this long after it opened (0: never)")
	fs.IntVar(&w.RatePerHour, "notify-rate", w.RatePerHour, "most notifications per channel and hour; more are suppressed (the console lists every incident)")
	fs.StringVar(&w.ConsoleURL, "console-url", "", "console URL for links in notifications (default https://<last --host>:<console port>)")
	fs.StringVar(&w.SMTPAddr, "notify-smtp", "", "e-mail incidents through this SMTP relay host:port")
	fs.StringVar(&w.SMTPFrom, "notify-smtp-from", "", "sender address of incident e-mail")
	fs.StringVar(&w.SMTPTo, "notify-smtp-to", "", "recipients of incident e-mail, comma-separated")
	fs.BoolVar(&w.SMTPStartTLS, "notify-smtp-starttls", false, "upgrade the SMTP connection with STARTTLS (verifies the relay's certificate)")
	fs.StringVar(&w.SMTPUser, "notify-smtp-user", "", "SMTP AUTH PLAIN user (needs STARTTLS unless the relay is on loopback)")
	fs.StringVar(&w.SMTPPasswordFile, "notify-smtp-password-file", "", "file holding the SMTP password (first line)")
	fs.StringVar(&w.Syslog, "notify-syslog", "", "send incidents to syslog (RFC 5424): udp://host:514 or tcp://host:601")
	fs.StringVar(&w.Webhook, "notify-webhook", "", "POST incidents as JSON to this https:// URL, signed with HMAC-SHA256 (X-Mamori-Signature)")
	fs.StringVar(&w.WebhookSecretFile, "notify-webhook-secret-file", "", "file holding the webhook's HMAC key (first line)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(hosts) > 0 {
		cfg.Hosts = append(cfg.Hosts, hosts...)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	srv, err := serve.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf("server.start-failed", err))
		return 1
	}
	if srv.Boot.CACreated {
		fmt.Fprintln(stdout, p.Sprintf("server.ca-created", cfg.DataDir))
	}
	fmt.Fprintln(stdout, p.Sprintf("server.ca-fingerprint", srv.Boot.CAFingerprint))
	if tok := srv.Boot.AdminToken; tok != "" {
		if cfg.AdminTokenFile != "" {
			fmt.Fprintln(stdout, p.Sprintf("server.admin-token-file", cfg.AdminTokenFile))
		} else {
			fmt.Fprintln(stdout, p.Sprintf("server.admin-token", tok.Reveal()))
		}
	}
	fmt.Fprintln(stdout, p.Sprintf("server.listening", srv.Addr().String()))
	fmt.Fprintln(stdout, p.Sprintf("server.admin.listening", srv.AdminAddr().String()))
	if a := srv.ConsoleAddr(); a != nil {
		fmt.Fprintln(stdout, p.Sprintf("server.console.listening", a.String()))
	}
	cfg.Log.Info("serving", "addr", srv.Addr().String(), "admin_addr", srv.AdminAddr().String(), "db", dbKind(cfg.DB))
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(stderr, p.Sprintf("server.start-failed", err))
		return 1
	}
	cfg.Log.Info("stopped")
	return 0
}

func dbKind(db string) string {
	if db == "" {
		return "sqlite"
	}
	return "postgres"
}

func cmdOperator(ctx context.Context, args []string, stdout, stderr io.Writer, p *i18n.Printer) int {
	if len(args) > 0 && args[0] == "token" {
		return cmdOperatorToken(ctx, args[1:], stdout, stderr, p)
	}
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, p.Sprintf("server.usage"))
		return 2
	}
	cfg := serve.DefaultConfig()
	fs := flag.NewFlagSet("operator create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory")
	fs.StringVar(&cfg.DB, "db", "", "postgres:// URL; empty for the embedded SQLite")
	name := fs.String("name", "", "operator name (who this is)")
	roleName := fs.String("role", "", "helpdesk, officer or admin")
	pwFile := fs.String("password-file", "", "file holding the console password (first line); also makes a TOTP secret, printed once")
	login := fs.String("login", "", "console login name (default: --name)")
	apiToken := fs.String("api-token", "", "also issue an API token for mamorictl with this name (expires in 90 days); opt-in")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	role, err := auth.ParseRole(*roleName)
	if err != nil || *name == "" || (*pwFile == "" && *apiToken == "") {
		// An operator needs a console login, an API token, or both:
		// tokens are opt-in (issue 14 item 7).
		fmt.Fprintln(stderr, p.Sprintf("server.operator-usage"))
		return 2
	}
	st, err := serve.OpenStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer st.Close()
	now := time.Now()
	// API tokens are opt-in (issue 14 item 7).
	withToken := *apiToken != ""
	op, tok, err := serve.CreateOperatorAudited(ctx, st, "local-admin", fmt.Sprintf("name=%s role=%s", *name, role), *name, role, now, *apiToken)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if withToken {
		fmt.Fprintln(stdout, p.Sprintf("server.operator-created", *name, role, tok.Reveal()))
	} else {
		fmt.Fprintln(stdout, p.Sprintf("server.operator-created-console", *name, role))
	}
	if *pwFile == "" {
		return 0
	}
	b, err := os.ReadFile(*pwFile)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf("server.console.password-file", err))
		return 1
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	if *login == "" {
		*login = *name
	}
	seeds, err := serve.LoadOperatorSeedKey(cfg.DataDir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cl, err := serve.SetConsoleLogin(ctx, st, seeds, op, *login, auth.Secret(strings.TrimRight(pw, "\r")), "local-admin", now)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, p.Sprintf("server.console.login-set", *name, *login, cl.TOTPSecret.Reveal()))
	fmt.Fprintln(stdout, p.Sprintf("server.console.totp-url", cl.TOTPURL.Reveal()))
	return 0
}

// cmdOperatorToken gives an operator a named API token from the server
// itself (access to the data directory is the credential): a console-only
// operator's first, or a longer one than a token can make for itself.
func cmdOperatorToken(ctx context.Context, args []string, stdout, stderr io.Writer, p *i18n.Printer) int {
	cfg := serve.DefaultConfig()
	fs := flag.NewFlagSet("operator token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory")
	fs.StringVar(&cfg.DB, "db", "", "postgres:// URL; empty for the embedded SQLite")
	who := fs.String("operator", "", "the operator (name or ID)")
	name := fs.String("name", "", "the token's name (unique among the operator's live tokens)")
	expires := fs.Duration("expires", auth.DefaultOperatorTokenTTL, "lifetime, at most 2160h (90 days)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *who == "" || *name == "" {
		fmt.Fprintln(stderr, p.Sprintf("server.operator-token-usage"))
		return 2
	}
	st, err := serve.OpenStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer st.Close()
	t, tok, err := serve.CreateOperatorToken(ctx, st, "local-admin", *who, *name, *expires, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, p.Sprintf("server.operator-token-created", t.Name, *who, t.ExpiresAt.UTC().Format(time.RFC3339), tok.Reveal()))
	return 0
}
