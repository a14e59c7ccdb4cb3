// Command mamori-loadgen simulates a fleet of terminals against a real
// mamori-server over mutual-TLS gRPC and reports throughput, latency,
// errors and whether every event was stored exactly once. The logic is in
// server/loadgen; this file parses flags and wires the process.
//
// Against a running server:
//
//	mamori-loadgen -server 127.0.0.1:8443 -ca var/server/ca.pem -admin-token-file var/server/admin.token -n 1000
//
// Starting (and, for -mode reconnect, restarting) the server itself, so its
// CPU and memory are measured:
//
//	mamori-loadgen -spawn bin/mamori-server -data /tmp/lg -n 10000 -interval 60s -duration 3m
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/mamori-dev/mamori/server/loadgen"
)

// toolGCPercent is the tool's GOGC when the environment sets none. At
// 10,000 terminals the tool holds ~700 MiB of connection state; at Go's
// default of 100 its collector took about a sixth of the tool's CPU
// (16 %: perf, docs/performance.md), CPU the server under test does not get
// on a machine the two share. 400 collects a quarter as often: whole
// runs (tool and server) took 8 % less CPU, for ~3.3 GiB of tool RSS
// instead of ~1.5 GiB. It is set here, not in the environment, so a
// spawned server keeps its own default.
const toolGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(toolGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultConfig()
	fs := flag.NewFlagSet("mamori-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Server, "server", "127.0.0.1:8443", "server address (host:port)")
	fs.StringVar(&cfg.AdminServer, "admin-server", "127.0.0.1:8445", "the server's admin API address (--admin-listen)")
	caFile := fs.String("ca", "", "the server's CA certificate (ca.pem in its data directory)")
	tokFile := fs.String("admin-token-file", "", "file holding an admin operator token (creates the enrolment token, verifies the events)")
	fs.IntVar(&cfg.TokenUses, "token-uses", 0, "use count of the enrolment token the tool creates (0: one per terminal)")
	fs.StringVar(&cfg.Token, "token", "", "an enrolment token to use instead of creating one")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "steady, enroll (enrolment storm) or reconnect (restart storm; needs -spawn)")
	fs.IntVar(&cfg.Terminals, "n", cfg.Terminals, "simulated terminals")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "report interval of each terminal")
	fs.Float64Var(&cfg.Jitter, "jitter", cfg.Jitter, "interval jitter, a fraction (±)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "reporting phase (reconnect: time before the restart)")
	fs.Float64Var(&cfg.Mix.USBBlocked, "usb-blocked", cfg.Mix.USBBlocked, "chance per report of a usb_blocked event")
	fs.Float64Var(&cfg.Mix.MFAFailure, "mfa-failure", cfg.Mix.MFAFailure, "chance per report of an mfa_failure event")
	fs.Float64Var(&cfg.Mix.StateFlip, "state-flip", cfg.Mix.StateFlip, "chance per report of a control changing state")
	fs.IntVar(&cfg.EnrollConcurrency, "enroll-concurrency", 0, "enrolments in flight at once (0: all terminals at once)")
	fs.DurationVar(&cfg.BackoffBase, "backoff-base", cfg.BackoffBase, "retry back-off after a failed report: first ceiling (the agent's: 1s)")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", cfg.MaxBackoff, "largest back-off ceiling; the interval caps it too (the agent's: 5m)")
	fs.DurationVar(&cfg.ConnectBackoffMax, "grpc-max-backoff", 0, "cap of gRPC's own reconnect back-off (0: gRPC's default 120s, as the agent)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", cfg.CallTimeout, "timeout of one call")
	fs.DurationVar(&cfg.StormTimeout, "storm-timeout", cfg.StormTimeout, "reconnect: how long to wait for every terminal")
	fs.BoolVar(&cfg.Differential, "diff", false, "differential reports, as the agent sends them: a full report, then only what changed")
	fs.BoolVar(&cfg.Warmup, "warmup", cfg.Warmup, "steady: before the timed phase, every terminal connects and sends one full report (-enroll-concurrency at a time); -warmup=false times the connection storm too")
	fs.BoolVar(&cfg.Baseline, "baseline", false, "steady: after the reports, the same terminals call the server's no-op health check for as long; prints the ratio")
	noVerify := fs.Bool("no-verify", false, "skip listing the stored events at the end")
	output := fs.String("o", "text", "text or json")
	spawn := fs.String("spawn", "", "start this mamori-server binary (and restart it for -mode reconnect)")
	dataDir := fs.String("data", "", "with -spawn: the server's data directory (created if missing)")
	db := fs.String("db", "", "with -spawn: postgres:// URL; empty for SQLite in -data")
	workers := fs.Int("ingest-workers", 0, "with -spawn: --ingest-workers for the server (0: its default)")
	fs.DurationVar(&cfg.Down, "down", 0, "reconnect: how long the server stays stopped")
	restartSig := fs.String("restart-signal", "TERM", "reconnect: TERM (graceful) or KILL")
	verbose := fs.Bool("v", false, "log warnings (failed enrolments and the like) to stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load tool itself (the whole run) to this file: what the tool costs on a machine it shares with the server")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Verify = !*noVerify
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintln(stderr, "-o must be text or json")
		return 2
	}

	if *spawn != "" {
		if *dataDir == "" {
			fmt.Fprintln(stderr, "-spawn needs -data DIR for the server")
			return 2
		}
		proc, err := startServer(ctx, *spawn, *dataDir, *db, cfg.Server, cfg.AdminServer, *workers)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer proc.Stop(os.Interrupt, 30*time.Second)
		sig := os.Signal(syscall.SIGTERM)
		if strings.EqualFold(*restartSig, "KILL") {
			sig = syscall.SIGKILL
		}
		cfg.StopServer = func(context.Context) error { return proc.Stop(sig, 30*time.Second) }
		cfg.StartServer = proc.Start
		cfg.Sample = proc.Sample
		if *caFile == "" {
			*caFile = filepath.Join(*dataDir, "ca.pem")
		}
		if *tokFile == "" {
			*tokFile = filepath.Join(*dataDir, "admin.token")
		}
	}
	if *caFile == "" {
		fmt.Fprintln(stderr, "-ca is required: the server's ca.pem")
		return 2
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg.CA = x509.NewCertPool()
	if !cfg.CA.AppendCertsFromPEM(pem) {
		fmt.Fprintf(stderr, "%s holds no PEM certificate\n", *caFile)
		return 1
	}
	if *tokFile != "" {
		b, err := os.ReadFile(*tokFile)
		if err != nil {
			fmt.Fprintf(stderr, "admin token: %v (a server creates admin.token only on its first start with --admin-token-file)\n", err)
			return 1
		}
		cfg.AdminToken = strings.TrimSpace(string(b))
		// The first admin's bootstrap token is single use: exchanged
		// for a named one, kept in the same file for the next run.
		tok, exchanged, err := loadgen.ExchangeBootstrap(ctx, cfg, "loadgen")
		if err != nil {
			fmt.Fprintf(stderr, "admin token: %v\n", err)
			return 1
		}
		if exchanged {
			if err := os.WriteFile(*tokFile, []byte(tok+"\n"), 0o600); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
		cfg.AdminToken = tok
	}

	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if res == nil {
			return 1
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		res.WriteSummary(stdout)
	}
	if err != nil || !res.OK {
		return 1
	}
	return 0
}

// startServer runs bin as `mamori-server serve` on addr with its output in
// DATA/server.log.
func startServer(ctx context.Context, bin, dataDir, db, addr, adminAddr string, workers int) (*loadgen.Process, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dataDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--data", dataDir, "--listen", addr, "--admin-listen", adminAddr, "--host", "127.0.0.1",
		"--admin-token-file", filepath.Join(dataDir, "admin.token"), "--log-level", "warn"}
	if db != "" {
		args = append(args, "--db", db)
	}
	if workers > 0 {
		args = append(args, "--ingest-workers", fmt.Sprint(workers))
	}
	p := &loadgen.Process{Bin: bin, Args: args, Addr: addr, Log: logf}
	if err := p.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	return p, nil
}
