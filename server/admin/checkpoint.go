package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/store"
)

// AuditHeadStore is what checkpointing the audit log needs.
type AuditHeadStore interface {
	AuditHead(ctx context.Context) (store.AuditRecord, error)
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]store.AuditRecord, error)
}

// DefaultCheckpointEvery: the server signs the audit log's head at least
// every this many records (serve checks every few seconds), and before
// every export.
const DefaultCheckpointEvery = 100

// checkpoints remembers the last checkpoint this service wrote.
type checkpoints struct {
	mu   sync.Mutex
	last int64 // seq of the last checkpoint record this process saw
	// signed is the record the last checkpoint this server signed
	// covers, kept in a file of the data directory (Deps.CheckpointFile),
	// not in the database: before signing a new head the server checks
	// that the database still holds it and that the chain from it to the
	// head links, so it never signs a history rewritten under it.
	signedSeq  int64
	signedHash []byte
	loaded     bool
	// latest is the newest checkpoint this server signed or found at the
	// log's head, for the fleet to witness (witness.go).
	latest Checkpoint
}

// ErrAuditRewritten: the audit log no longer holds the record the
// server's last checkpoint covers, or the chain after it does not link.
var ErrAuditRewritten = errors.New("the audit log was rewritten since the server's last signed checkpoint: it refuses to sign it; compare with a backup and run mamorictl audit verify")

// Checkpoint signs the audit log's head: it appends a checkpoint record
// (audit.CheckpointAction) whose signature by the server's CA key covers
// the head's seq and hash. Nothing is written when the head already is a
// checkpoint or the log is empty, or without a signer (Deps.SignAudit).
func (s *Service) Checkpoint(ctx context.Context) error { return s.checkpoint(ctx, 0) }

// CheckpointIfDue checkpoints when at least every records were appended
// since the last checkpoint.
func (s *Service) CheckpointIfDue(ctx context.Context, every int64) error {
	return s.checkpoint(ctx, every)
}

func (s *Service) checkpoint(ctx context.Context, every int64) error {
	if s.signAudit == nil {
		return nil
	}
	s.ck.mu.Lock()
	defer s.ck.mu.Unlock()
	head, err := s.st.AuditHead(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	if audit.IsCheckpoint(head) {
		s.ck.last = head.Seq
		if seq, h, sig, err := audit.ParseCheckpoint(head.Detail); err == nil && seq > s.ck.latest.Seq {
			s.ck.latest = Checkpoint{Seq: seq, Head: h, Sig: sig}
		}
		return nil
	}
	if every > 0 && s.ck.last > 0 && head.Seq-s.ck.last < every {
		return nil
	}
	if err := s.checkSinceSigned(ctx, head); err != nil {
		s.log.ErrorContext(ctx, "audit checkpoint refused", "error", err)
		return err
	}
	sig, err := s.signAudit(audit.CheckpointMessage(head.Seq, head.Hash))
	if err != nil {
		return fmt.Errorf("audit checkpoint: sign: %w", err)
	}
	r, err := s.st.AppendAudit(ctx, audit.Record{At: s.now(), Actor: audit.CheckpointActor, Action: audit.CheckpointAction,
		Target: fmt.Sprintf("seq %d", head.Seq), Detail: audit.FormatCheckpoint(head.Seq, head.Hash, sig)})
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	s.ck.last = r.Seq
	if s.ckFile != "" {
		// seq, head and (since witnesses) the signature; a file of an
		// older server has the first two only.
		b := []byte(fmt.Sprintf("%d %s %s\n", head.Seq, hex.EncodeToString(head.Hash), base64.StdEncoding.EncodeToString(sig)))
		if err := atomicfile.Write(s.ckFile, b, 0o600); err != nil {
			return fmt.Errorf("audit checkpoint: remember: %w", err)
		}
	}
	s.ck.signedSeq, s.ck.signedHash = head.Seq, head.Hash
	s.ck.latest = Checkpoint{Seq: head.Seq, Head: head.Hash, Sig: sig}
	return nil
}

// checkSinceSigned: the record the last signed checkpoint covers is
// unchanged, and every record from it to head links to the one before.
func (s *Service) checkSinceSigned(ctx context.Context, head store.AuditRecord) error {
	if err := s.loadSigned(); err != nil {
		return err
	}
	if s.ck.signedSeq == 0 {
		return nil
	}
	if head.Seq < s.ck.signedSeq {
		return ErrAuditRewritten
	}
	prev := s.ck.signedHash
	first := true
	for after := s.ck.signedSeq - 1; after < head.Seq; {
		rs, err := s.st.ListAudit(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("audit checkpoint: %w", err)
		}
		if len(rs) == 0 {
			return ErrAuditRewritten
		}
		for _, r := range rs {
			if r.Seq > head.Seq {
				break
			}
			if first {
				if r.Seq != s.ck.signedSeq || !bytes.Equal(r.Hash, s.ck.signedHash) ||
					!bytes.Equal(audit.Hash(r.PrevHash, r), r.Hash) {
					return ErrAuditRewritten
				}
				first = false
			} else if r.Seq != after+1 || !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(audit.Hash(r.PrevHash, r), r.Hash) {
				return ErrAuditRewritten
			}
			prev, after = r.Hash, r.Seq
		}
	}
	return nil
}

// loadSigned reads the checkpoint file once: "seq head [signature]".
func (s *Service) loadSigned() error {
	if s.ck.loaded || s.ckFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.ckFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("audit checkpoint: %w", err)
	default:
		f := strings.Fields(string(b))
		if len(f) < 2 || len(f) > 3 {
			return fmt.Errorf("audit checkpoint: %s: want \"seq head [signature]\", found %d fields", s.ckFile, len(f))
		}
		seq, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("audit checkpoint: %s: %w", s.ckFile, err)
		}
		hash, err := hex.DecodeString(f[1])
		if err != nil {
			return fmt.Errorf("audit checkpoint: %s: %w", s.ckFile, err)
		}
		s.ck.signedSeq, s.ck.signedHash = seq, hash
		if len(f) == 3 {
			sig, err := base64.StdEncoding.Strict().DecodeString(f[2])
			if err != nil {
				return fmt.Errorf("audit checkpoint: %s: %w", s.ckFile, err)
			}
			if seq > s.ck.latest.Seq {
				s.ck.latest = Checkpoint{Seq: seq, Head: hash, Sig: sig}
			}
		}
	}
	s.ck.loaded = true
	return nil
}
