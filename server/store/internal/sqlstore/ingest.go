package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
)

// IngestReports stores a batch of reports in one transaction: it reads
// (and on PostgreSQL locks, in ID order, so concurrent batches and servers
// cannot deadlock) the batch's device rows, applies the reports
// (rules.Plan), writes the outcome with the backend's bulk statements
// (Dialect.WriteBatch) and appends the compliance changes to the audit
// log.
func (s *Store) IngestReports(ctx context.Context, in []store.ReportInput) ([]store.ReportResult, error) {
	if len(in) == 0 {
		return nil, nil
	}
	var b *rules.Batch
	err := s.write(ctx, func(q Q) error {
		states, err := s.loadStates(ctx, q, rules.DeviceIDs(in))
		if err != nil {
			return err
		}
		if b, err = rules.Plan(in, states); err != nil {
			return err
		}
		if err := s.d.WriteBatch(ctx, q, b); err != nil {
			return err
		}
		// Compliance changes go to the audit log with the reports that
		// caused them, or not at all.
		for _, r := range b.Audit {
			if _, err := s.appendAudit(ctx, q, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ingest %d reports: %w", len(in), err)
	}
	return b.Results, nil
}

// loadStates reads the devices ids (sorted) for a report batch, locking
// their rows for the transaction where the backend has row locks.
func (s *Store) loadStates(ctx context.Context, q Q, ids []string) (map[string]*rules.State, error) {
	states := make(map[string]*rules.State, len(ids))
	for chunk := range slices.Chunk(ids, anyOfChunk) {
		cond, args := s.d.AnyOf("id", chunk)
		_, err := query(ctx, q, func(r Rows) (struct{}, error) {
			st, err := scanState(r)
			if err == nil {
				states[st.ID] = st
			}
			return struct{}{}, err
		}, `SELECT id, coalesce(machine_id, ''), cert_serial, coalesce(prev_cert_serial, ''), revoked_at, verdict, reasons, failing_since,
			last_seen, policy_version, controls, state_digest, verdict_policy FROM devices WHERE `+cond+` ORDER BY id`+s.d.ForUpdate(""), args...)
		if err != nil {
			return nil, fmt.Errorf("load devices: %w", err)
		}
	}
	return states, nil
}

func scanState(r Rows) (*rules.State, error) {
	var (
		st                     rules.State
		revoked, failing, seen Time
		reasons                string
		controls               []byte
	)
	if err := r.Scan(&st.ID, &st.MachineID, &st.CertSerial, &st.PrevSerial, &revoked, &st.Verdict, &reasons, &failing, &seen,
		&st.PolicyVersion, &controls, &st.StateDigest, &st.VerdictPolicy); err != nil {
		return nil, err
	}
	var err error
	if st.Controls, err = codec.ParseRawControls(controls); err != nil {
		return nil, fmt.Errorf("device %s: %w", st.ID, err)
	}
	if st.Reasons, err = codec.ParseReasons(reasons); err != nil {
		return nil, fmt.Errorf("device %s: %w", st.ID, err)
	}
	st.RevokedAt, st.FailingSince, st.LastSeen = revoked.T, failing.T, seen.T
	return &st, nil
}

// touchChunk bounds the rows of one TouchDevices statement (4 arguments
// a row: far below either database's limit).
const touchChunk = 500

// TouchDevices moves last_seen forward for a batch of steady-state
// reports: one UPDATE … FROM (VALUES …) per touchChunk rows, in one
// transaction. A touch applies only while the device holds the touch's
// certificate (current or previous), state digest and no revocation;
// the others are returned as stale. VALUES columns are column1… on both
// databases.
func (s *Store) TouchDevices(ctx context.Context, ts []store.Touch) ([]string, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	matched := make(map[string]bool, len(ts))
	cast := s.d.TimeCast()
	// Rows are locked in id order, as loadStates locks them for a report
	// batch: an UPDATE … FROM (VALUES …) locks in join order, and on
	// PostgreSQL, with report batches in flight beside it, two orders
	// deadlocked (40P01, failing a whole report batch: seen in
	// BenchmarkSteadyStatePostgres). Sorted, every chunk comes after the
	// previous one, and a locking SELECT … ORDER BY id takes each chunk's
	// rows in order before the UPDATE.
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b store.Touch) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	lock := s.d.ForUpdate("")
	err := s.write(ctx, func(q Q) error {
		clear(matched)
		for chunk := range slices.Chunk(ts, touchChunk) {
			if lock != "" {
				ids := make([]string, len(chunk))
				for i, t := range chunk {
					ids[i] = t.DeviceID
				}
				cond, args := s.d.AnyOf("id", ids)
				if _, err := query(ctx, q, func(r Rows) (struct{}, error) {
					var id string
					return struct{}{}, r.Scan(&id)
				}, `SELECT id FROM devices WHERE `+cond+` ORDER BY id`+lock, args...); err != nil {
					return fmt.Errorf("touch devices: lock: %w", err)
				}
			}
			args := make([]any, 0, 4*len(chunk))
			var sb strings.Builder
			for i, t := range chunk {
				if i > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString("(?,?,?,?" + cast + ")")
				args = append(args, t.DeviceID, t.CertSerial, t.StateDigest, s.d.Native(codec.Time(t.At)))
			}
			_, err := query(ctx, q, func(r Rows) (struct{}, error) {
				var id string
				err := r.Scan(&id)
				matched[id] = true
				return struct{}{}, err
			}, `UPDATE devices SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < v.column4 THEN v.column4 ELSE last_seen END
				FROM (VALUES `+sb.String()+`) AS v
				WHERE devices.id = v.column1 AND (devices.cert_serial = v.column2 OR devices.prev_cert_serial = v.column2)
				AND devices.state_digest = v.column3 AND devices.state_digest <> '' AND devices.revoked_at IS NULL
				RETURNING devices.id`, args...)
			if err != nil {
				return fmt.Errorf("touch devices: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, t := range ts {
		if !matched[t.DeviceID] {
			stale = append(stale, t.DeviceID)
		}
	}
	return stale, nil
}
