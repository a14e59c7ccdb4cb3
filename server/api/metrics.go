package api

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// latencyBuckets are the upper bounds, in seconds, of the RPC latency
// histogram: from a no-op call (~0.1 ms here) to a slow enrolment.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics are the gRPC server's Prometheus counters: calls and their
// latency per method and code, reports and events stored. Written by the
// interceptor and Report, read by WriteMetrics (the console's /metrics).
// A method name comes from the method table, never from a client, so the
// label set is bounded.
type metrics struct {
	reports atomic.Int64
	events  atomic.Int64
	// steady counts no-change reports answered on the fast path (their
	// last_seen batched); needFull the differential reports answered
	// need_full.
	steady, needFull atomic.Int64
	// enrollTokenFailures: enrolments refused for their token.
	enrollTokenFailures atomic.Int64
	// witnessConflicts: full reports whose witnessed audit checkpoint the
	// log does not hold (rolled back or forked); witnessUnsigned: ones
	// not signed by this server's CA (server/api/witness.go).
	witnessConflicts, witnessUnsigned atomic.Int64

	mu      sync.Mutex
	methods map[string]*methodStats
}

type methodStats struct {
	buckets []uint64 // cumulative counts are computed when written
	sum     float64
	count   uint64
	codes   map[codes.Code]uint64
}

func (m *metrics) observe(method string, d time.Duration, code codes.Code) {
	if _, known := methodAccess[method]; !known {
		method = "other"
	}
	sec := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.methods == nil {
		m.methods = map[string]*methodStats{}
	}
	st := m.methods[method]
	if st == nil {
		st = &methodStats{buckets: make([]uint64, len(latencyBuckets)), codes: map[codes.Code]uint64{}}
		m.methods[method] = st
	}
	for i, le := range latencyBuckets {
		if sec <= le {
			st.buckets[i]++
			break
		}
	}
	st.sum += sec
	st.count++
	st.codes[code]++
}

// WriteMetrics writes the gRPC server's metrics in the Prometheus text
// format (version 0.0.4).
func (s *Server) WriteMetrics(w io.Writer) {
	m := s.metrics
	fmt.Fprintln(w, "# HELP mamori_reports_ingested_total Agent reports stored (durably committed).")
	fmt.Fprintln(w, "# TYPE mamori_reports_ingested_total counter")
	fmt.Fprintf(w, "mamori_reports_ingested_total %d\n", m.reports.Load())
	fmt.Fprintln(w, "# HELP mamori_reports_unchanged_total No-change reports answered without a transaction (last_seen written in batches).")
	fmt.Fprintln(w, "# TYPE mamori_reports_unchanged_total counter")
	fmt.Fprintf(w, "mamori_reports_unchanged_total %d\n", m.steady.Load())
	fmt.Fprintln(w, "# HELP mamori_reports_need_full_total Differential reports answered need_full (the server did not hold their base state).")
	fmt.Fprintln(w, "# TYPE mamori_reports_need_full_total counter")
	fmt.Fprintf(w, "mamori_reports_need_full_total %d\n", m.needFull.Load())
	fmt.Fprintln(w, "# HELP mamori_audit_witness_conflicts_total Full reports carrying a signed audit checkpoint this server's log does not hold (rolled back or forked).")
	fmt.Fprintln(w, "# TYPE mamori_audit_witness_conflicts_total counter")
	fmt.Fprintf(w, "mamori_audit_witness_conflicts_total %d\n", m.witnessConflicts.Load())
	fmt.Fprintln(w, "# HELP mamori_audit_witness_unsigned_total Full reports carrying an audit checkpoint not signed by this server's CA (ignored).")
	fmt.Fprintln(w, "# TYPE mamori_audit_witness_unsigned_total counter")
	fmt.Fprintf(w, "mamori_audit_witness_unsigned_total %d\n", m.witnessUnsigned.Load())
	fmt.Fprintln(w, "# HELP mamori_events_stored_total Agent events stored for the first time (duplicates are acknowledged, not counted).")
	fmt.Fprintln(w, "# TYPE mamori_events_stored_total counter")
	fmt.Fprintf(w, "mamori_events_stored_total %d\n", m.events.Load())
	fmt.Fprintln(w, "# HELP mamori_enroll_token_failures_total Enrolments refused for an unknown or expired token.")
	fmt.Fprintln(w, "# TYPE mamori_enroll_token_failures_total counter")
	fmt.Fprintf(w, "mamori_enroll_token_failures_total %d\n", m.enrollTokenFailures.Load())

	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.methods))
	for n := range m.methods {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintln(w, "# HELP mamori_rpc_total gRPC calls by method and status code.")
	fmt.Fprintln(w, "# TYPE mamori_rpc_total counter")
	for _, n := range names {
		st := m.methods[n]
		cs := make([]codes.Code, 0, len(st.codes))
		for c := range st.codes {
			cs = append(cs, c)
		}
		slices.Sort(cs)
		for _, c := range cs {
			fmt.Fprintf(w, "mamori_rpc_total{method=%q,code=%q} %d\n", n, c.String(), st.codes[c])
		}
	}
	fmt.Fprintln(w, "# HELP mamori_rpc_duration_seconds gRPC call latency on the server, authentication included.")
	fmt.Fprintln(w, "# TYPE mamori_rpc_duration_seconds histogram")
	for _, n := range names {
		st := m.methods[n]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += st.buckets[i]
			fmt.Fprintf(w, "mamori_rpc_duration_seconds_bucket{method=%q,le=%q} %d\n", n, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "mamori_rpc_duration_seconds_bucket{method=%q,le=\"+Inf\"} %d\n", n, st.count)
		fmt.Fprintf(w, "mamori_rpc_duration_seconds_sum{method=%q} %s\n", n, strconv.FormatFloat(st.sum, 'g', -1, 64))
		fmt.Fprintf(w, "mamori_rpc_duration_seconds_count{method=%q} %d\n", n, st.count)
	}
}
