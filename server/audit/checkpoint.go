package audit

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mamori-dev/mamori/internal/auditsig"
)

// Signed checkpoints (issue 14 item 8). The chain above is unkeyed: who
// can write the database can change a record and recompute every hash
// after it. A checkpoint is a record of its own, appended by the server,
// whose Detail carries a signature by the server's CA key over the seq
// and stored Hash of the record it covers (the chain's head when it was
// made). A rewrite of any record up to that head changes that Hash, and
// the signature no longer holds; making a new one needs the CA key, which
// lives in the server's data directory, not in the database. The server
// checkpoints every N records and before every export (ListAudit from
// the start, the console's evidence report), so a verifier always sees
// one that covers everything up to the moment it started reading.

// Checkpoint records: actor "system", action CheckpointAction, target
// "seq N", detail FormatCheckpoint.
const (
	CheckpointActor  = "system"
	CheckpointAction = "audit.checkpoint"
)

// CheckpointMessage is what a checkpoint signs: the domain, seq (8 bytes,
// big-endian) and the covered record's Hash (internal/auditsig, which
// the agent shares to check the copy it witnesses).
func CheckpointMessage(seq int64, hash []byte) []byte { return auditsig.Message(seq, hash) }

// FormatCheckpoint is a checkpoint record's Detail.
func FormatCheckpoint(seq int64, hash, sig []byte) string {
	return fmt.Sprintf("seq=%d head=%s sig=%s", seq, hex.EncodeToString(hash), base64.StdEncoding.EncodeToString(sig))
}

// ErrCheckpointFormat: a checkpoint's Detail does not parse.
var ErrCheckpointFormat = errors.New("malformed audit checkpoint")

// maxCheckpointDetail bounds what ParseCheckpoint reads.
const maxCheckpointDetail = 1024

// ParseCheckpoint reads a Detail FormatCheckpoint made.
func ParseCheckpoint(detail string) (seq int64, hash, sig []byte, err error) {
	if len(detail) > maxCheckpointDetail {
		return 0, nil, nil, ErrCheckpointFormat
	}
	f := strings.Split(detail, " ")
	if len(f) != 3 {
		return 0, nil, nil, ErrCheckpointFormat
	}
	s, ok1 := strings.CutPrefix(f[0], "seq=")
	h, ok2 := strings.CutPrefix(f[1], "head=")
	g, ok3 := strings.CutPrefix(f[2], "sig=")
	if !ok1 || !ok2 || !ok3 {
		return 0, nil, nil, ErrCheckpointFormat
	}
	seq, err1 := strconv.ParseInt(s, 10, 64)
	hash, err2 := hex.DecodeString(h)
	sig, err3 := base64.StdEncoding.Strict().DecodeString(g)
	// One spelling per checkpoint: lower-case hex, as FormatCheckpoint
	// writes it (an upper-case head names the same hash but is not what
	// the server signed).
	if err1 != nil || err2 != nil || err3 != nil || seq < 1 || len(hash) != 32 || len(sig) == 0 || s != strconv.FormatInt(seq, 10) ||
		h != hex.EncodeToString(hash) {
		return 0, nil, nil, ErrCheckpointFormat
	}
	return seq, hash, sig, nil
}

// IsCheckpoint reports whether r is a checkpoint record.
func IsCheckpoint(r Record) bool { return r.Actor == CheckpointActor && r.Action == CheckpointAction }

// CheckCA returns a signature check by the CA certificate's key, for
// Verifier.Signed.
func CheckCA(ca *x509.Certificate) func(msg, sig []byte) error { return auditsig.CheckCA(ca) }

// Checkpoint is the kind of break a checkpoint that does not hold is: a
// bad signature, a head that is not the covered record's stored Hash,
// or one that does not parse.
const Checkpoint BreakKind = "checkpoint"

// maxPending bounds how many record hashes a Verifier keeps while it
// waits for the next checkpoint (32 bytes each).
const maxPending = 1 << 20

// Signed makes v check every checkpoint record with check (CheckCA). A
// verifier without it checks the unkeyed chain only.
func (v *Verifier) Signed(check func(msg, sig []byte) error) { v.check = check }

// checkpoint checks the checkpoint record r against the records since
// the last good checkpoint.
func (v *Verifier) checkpoint(r Record) {
	seq, head, sig, err := ParseCheckpoint(r.Detail)
	want, seen := v.pending[seq]
	if !seen && seq == v.signedThrough && v.signedThrough > 0 {
		// Two checkpoints of one head (two servers, or an export and the
		// timer at once).
		want, seen = v.signedHash, true
	}
	switch {
	case err != nil:
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Checkpoint, Record: r, Why: "does not parse"})
	case !seen:
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Checkpoint, Record: r, Why: fmt.Sprintf("covers seq %d, which is not a record since the previous checkpoint", seq)})
	case !bytes.Equal(want, head):
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Checkpoint, Record: r, Stored: want, Computed: head,
			Why: fmt.Sprintf("signed head of seq %d is not its stored hash", seq)})
	case v.check(CheckpointMessage(seq, head), sig) != nil:
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Checkpoint, Record: r, Why: "signature does not verify with the server's CA key"})
	default:
		v.signedThrough, v.signedHash = seq, head
		v.checkpoints++
		clear(v.pending)
	}
}

// SignedThrough is the last seq a good checkpoint covers (0: none).
func (v *Verifier) SignedThrough() int64 { return v.signedThrough }

// Checkpoints is how many good checkpoints were seen.
func (v *Verifier) Checkpoints() int { return v.checkpoints }
