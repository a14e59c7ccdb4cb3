package admin

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/mamori-dev/mamori/internal/auditsig"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/store"
)

// Witnesses (issue #14, stretch; docs/security.md "Witnesses"). A signed
// checkpoint proves a record to whoever has the server's CA key... and
// to nobody else once the whole data directory, database and checkpoint
// file together, is restored from an older backup or replaced: the
// server then signs a new history over the same seqs without knowing.
// So every terminal keeps the newest checkpoint it was given (after
// checking the signature with its pinned CA) and sends it back in its
// full reports. The fleet is the witness: a copy whose seq is past the
// log's head says the log was rolled back; one whose record has another
// hash says it was forked. Either is written to the audit log once per
// checkpoint and kind, counted, and logged; the report itself is stored
// as usual (a witness never costs a terminal its report).

// Checkpoint is a signed audit checkpoint as the fleet carries it.
type Checkpoint struct {
	Seq       int64
	Head, Sig []byte
}

// WitnessResult is what a terminal's copy of a checkpoint showed.
type WitnessResult int

const (
	// WitnessHeld: the log holds the record the checkpoint covers, with
	// the signed hash.
	WitnessHeld WitnessResult = iota
	// WitnessRolledBack: the log ends before the record.
	WitnessRolledBack
	// WitnessForked: the log's record of that seq has another hash.
	WitnessForked
)

func (r WitnessResult) String() string {
	switch r {
	case WitnessHeld:
		return "held"
	case WitnessRolledBack:
		return "rolled back"
	case WitnessForked:
		return "forked"
	}
	return fmt.Sprintf("WitnessResult(%d)", int(r))
}

// WitnessAction is the audit action of a record saying the fleet saw a
// history this log does not hold.
const WitnessAction = "audit.witness_conflict"

// ErrWitnessUnsigned: a terminal's checkpoint is not signed by this
// server's CA key (a damaged copy, or a terminal lying): it proves
// nothing either way.
var ErrWitnessUnsigned = errors.New("the terminal's audit checkpoint is not signed by this server's CA key")

// maxWitnessCache bounds the checkpoints remembered as held and the
// conflicts remembered as written (a few bytes each; the fleet carries
// few distinct checkpoints at a time, a terminal can only send ones the
// server signed).
const maxWitnessCache = 4096

type witnesses struct {
	mu        sync.Mutex
	held      map[int64][]byte // seq → head the log was seen to hold
	written   map[witnessKey]bool
	conflicts int64
}

type witnessKey struct {
	seq  int64
	kind WitnessResult
}

// LatestCheckpoint is the newest checkpoint this server signed or found
// at the head of the log (false: none yet since it started, and none
// remembered in its data directory).
func (s *Service) LatestCheckpoint() (Checkpoint, bool) {
	s.ck.mu.Lock()
	defer s.ck.mu.Unlock()
	if err := s.loadSigned(); err != nil {
		s.log.Error("audit checkpoint file unreadable", "error", err)
	}
	if s.ck.latest.Seq == 0 {
		return Checkpoint{}, false
	}
	return s.ck.latest, true
}

// Witness checks a checkpoint a terminal (device) kept against the log.
// check verifies the signature (audit.CheckCA of this server's CA). A
// conflict is written to the audit log the first time this server sees
// it for that checkpoint, and counted every time (WitnessConflicts).
func (s *Service) Witness(ctx context.Context, device string, cp Checkpoint, check func(msg, sig []byte) error) (WitnessResult, error) {
	if err := auditsig.WellFormed(cp.Seq, cp.Head, cp.Sig); err != nil {
		return WitnessHeld, err
	}
	s.wit.mu.Lock()
	if h, ok := s.wit.held[cp.Seq]; ok && bytes.Equal(h, cp.Head) {
		s.wit.mu.Unlock()
		return WitnessHeld, nil
	}
	s.wit.mu.Unlock()
	if check == nil || check(auditsig.Message(cp.Seq, cp.Head), cp.Sig) != nil {
		return WitnessHeld, ErrWitnessUnsigned
	}
	rs, err := s.st.ListAudit(ctx, cp.Seq-1, 1)
	if err != nil {
		return WitnessHeld, fmt.Errorf("audit witness: %w", err)
	}
	res := WitnessHeld
	var detail string
	switch {
	case len(rs) == 0 || rs[0].Seq != cp.Seq:
		res = WitnessRolledBack
		head, err := s.st.AuditHead(ctx)
		var ends string
		switch {
		case errors.Is(err, store.ErrNotFound):
			ends = "this log is empty"
		case err != nil:
			return WitnessHeld, fmt.Errorf("audit witness: %w", err)
		default:
			ends = fmt.Sprintf("this log ends at seq %d", head.Seq)
		}
		if len(rs) > 0 {
			ends = fmt.Sprintf("this log has no record %d (the next is %d)", cp.Seq, rs[0].Seq)
		}
		detail = fmt.Sprintf("rolled back: terminal %s holds the server's signed checkpoint of seq %d (head %s); %s. "+
			"The log was restored from an older backup or replaced: compare with the newest backup and run mamorictl audit verify",
			device, cp.Seq, hex.EncodeToString(cp.Head), ends)
	case !bytes.Equal(rs[0].Hash, cp.Head):
		res = WitnessForked
		detail = fmt.Sprintf("forked: terminal %s holds the server's signed checkpoint of seq %d (head %s); this log's record %d has hash %s. "+
			"The history after an older backup was replaced by another: compare with the newest backup and run mamorictl audit verify",
			device, cp.Seq, hex.EncodeToString(cp.Head), cp.Seq, hex.EncodeToString(rs[0].Hash))
	}
	s.wit.mu.Lock()
	defer s.wit.mu.Unlock()
	if res == WitnessHeld {
		if s.wit.held == nil || len(s.wit.held) >= maxWitnessCache {
			s.wit.held = map[int64][]byte{}
		}
		s.wit.held[cp.Seq] = bytes.Clone(cp.Head)
		return res, nil
	}
	s.wit.conflicts++
	key := witnessKey{cp.Seq, res}
	if s.wit.written[key] {
		return res, nil
	}
	s.log.ErrorContext(ctx, "AUDIT LOG CONFLICT: a terminal holds a signed checkpoint this log does not", "device", device,
		"seq", cp.Seq, "result", res.String(), "detail", detail)
	if _, err := s.st.AppendAudit(ctx, audit.Record{At: s.now(), Actor: audit.CheckpointActor, Action: WitnessAction,
		Target: "device " + device, Detail: detail}); err != nil {
		return res, fmt.Errorf("audit witness: record the conflict: %w", err)
	}
	if s.wit.written == nil || len(s.wit.written) >= maxWitnessCache {
		s.wit.written = map[witnessKey]bool{}
	}
	s.wit.written[key] = true
	return res, nil
}

// WitnessConflicts counts the reports whose checkpoint this log did not
// hold since the server started.
func (s *Service) WitnessConflicts() int64 {
	s.wit.mu.Lock()
	defer s.wit.mu.Unlock()
	return s.wit.conflicts
}
