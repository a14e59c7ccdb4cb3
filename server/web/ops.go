package web

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/mamori-dev/mamori/server/compliance"
)

// counters are the console's own Prometheus counters.
type counters struct {
	logins, loginFailures, lockouts, denied, throttled atomic.Int64
}

// healthz: the process answers.
func (c *Console) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz: the database answers (one indexed read).
func (c *Console) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if _, err := c.st.CurrentPolicy(r.Context()); err != nil {
		c.log.WarnContext(r.Context(), "readyz", "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "store unavailable")
		return
	}
	fmt.Fprintln(w, "ready")
}

// metrics is the Prometheus text format: fleet counts by derived state
// (one pass over the verdict index) and the console's sign-in counters.
// It carries counts only, no names, so it needs no sign-in.
func (c *Console) metrics(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pol, err := c.st.CurrentPolicy(ctx)
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	n, err := c.st.CountFleet(ctx, compliance.OfflineCut(pol, c.now()))
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintln(w, "# HELP mamori_devices Devices by compliance state, as operators see it.")
	fmt.Fprintln(w, "# TYPE mamori_devices gauge")
	for _, x := range []struct {
		state string
		n     int64
	}{{"compliant", n.Compliant}, {"noncompliant", n.Noncompliant}, {"offline", n.Offline},
		{"never_reported", n.NeverReported}, {"revoked", n.Revoked}} {
		fmt.Fprintf(w, "mamori_devices{state=%q} %d\n", x.state, x.n)
	}
	fmt.Fprintln(w, "# HELP mamori_policy_version The policy version in force.")
	fmt.Fprintln(w, "# TYPE mamori_policy_version gauge")
	fmt.Fprintf(w, "mamori_policy_version %d\n", pol.Version)
	for _, m := range []struct {
		name, help string
		v          int64
	}{
		{"mamori_console_logins_total", "Successful console sign-ins.", c.n.logins.Load()},
		{"mamori_console_login_failures_total", "Failed console sign-ins.", c.n.loginFailures.Load()},
		{"mamori_console_lockouts_total", "Console logins locked after repeated failures.", c.n.lockouts.Load()},
		{"mamori_console_denied_total", "Console requests refused for role or CSRF.", c.n.denied.Load()},
		{"mamori_console_login_throttled_total", "Console sign-ins refused before any password check (per-address or per-login limit, or no free hash slot).", c.n.throttled.Load()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", m.name, m.help, m.name, m.name, m.v)
	}
	if c.metricx != nil {
		c.metricx(w)
	}
}
