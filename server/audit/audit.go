// Package audit is the audit log's record, its hash and the chain that
// links the records, and the one verifier that checks a chain: the store
// computes hashes with Hash when it appends, and the console's evidence
// report and `mamorictl audit verify` recompute the chain with Verifier.
//
// The package depends on nothing else of the server, so mamorictl can
// verify a chain without linking the store.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// Record is one entry in the append-only, hash-chained audit log. The
// store fills Seq, PrevHash and Hash: Hash = SHA-256(PrevHash ||
// canonical encoding of the other fields), see Hash.
type Record struct {
	Seq      int64
	At       time.Time
	Actor    string // operator ID, "device:<id>" or "system"
	Action   string // e.g. "token.create", "device.revoke", "policy.set"
	Target   string
	Detail   string
	PrevHash []byte
	Hash     []byte
}

// Hash computes the chain hash of r after prev: SHA-256 over prev and the
// length-prefixed fields seq, at (RFC 3339, UTC, nanoseconds), actor,
// action, target and detail. r.PrevHash and r.Hash are not read.
func Hash(prev []byte, r Record) []byte {
	h := sha256.New()
	h.Write(prev)
	for _, f := range []string{
		strconv.FormatInt(r.Seq, 10),
		r.At.UTC().Format(time.RFC3339Nano),
		r.Actor, r.Action, r.Target, r.Detail,
	} {
		// Length-prefixed, so no two field lists encode alike.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// BreakKind says how the chain fails to hold at one record.
type BreakKind string

const (
	// Gap: the record's Seq does not follow the one before it (records
	// were deleted).
	Gap BreakKind = "gap"
	// Link: the record's PrevHash is not the previous record's Hash.
	Link BreakKind = "link"
	// Content: the record's Hash is not the one recomputed from its
	// fields and PrevHash (the record was changed).
	Content BreakKind = "hash"
)

// Break is one place where the chain does not hold.
type Break struct {
	Seq  int64
	Kind BreakKind
	// PrevSeq is the record before Seq in the log (Gap, Link).
	PrevSeq int64
	// Stored and Computed are the differing hashes (Link: the stored
	// PrevHash and the previous record's Hash; Content: the stored Hash
	// and the one recomputed from the record's fields).
	Stored, Computed []byte
	Record           Record
	// Why says what is wrong with a checkpoint (Checkpoint).
	Why string
}

// String says what broke, in English, naming the records.
func (b Break) String() string {
	switch b.Kind {
	case Gap:
		return fmt.Sprintf("seq %d: records after seq %d are missing", b.Seq, b.PrevSeq)
	case Link:
		return fmt.Sprintf("seq %d: link to seq %d broken", b.Seq, b.PrevSeq)
	case Checkpoint:
		return fmt.Sprintf("seq %d: signed checkpoint broken: %s", b.Seq, b.Why)
	default:
		return fmt.Sprintf("seq %d: content changed", b.Seq)
	}
}

// Verifier recomputes a chain record by record, in Seq order, across as
// many pages as the caller reads. It trusts nothing the store computed:
// the link is checked against the previous record's stored Hash, and each
// Hash is recomputed from the record's fields and its own PrevHash, so a
// changed record is named alone and a rewritten hash shows as the next
// record's broken link. It collects every break rather than stopping at
// the first: an auditor needs to know how much of the log is in doubt.
// The zero value is ready to use and expects the chain to start at seq 1.
type Verifier struct {
	n        int64
	prevSeq  int64
	prevHash []byte
	breaks   []Break

	// Signed checkpoints (checkpoint.go).
	check         func(msg, sig []byte) error
	pending       map[int64][]byte // record hashes since the last good checkpoint
	signedThrough int64
	signedHash    []byte
	checkpoints   int
}

// Add checks r against the record before it.
func (v *Verifier) Add(r Record) {
	v.n++
	if r.Seq != v.prevSeq+1 {
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Gap, PrevSeq: v.prevSeq, Record: r})
	}
	if !bytes.Equal(r.PrevHash, v.prevHash) {
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Link, PrevSeq: v.prevSeq,
			Stored: r.PrevHash, Computed: v.prevHash, Record: r})
	}
	if want := Hash(r.PrevHash, r); !bytes.Equal(want, r.Hash) {
		v.breaks = append(v.breaks, Break{Seq: r.Seq, Kind: Content, Stored: r.Hash, Computed: want, Record: r})
	}
	if v.check != nil {
		if IsCheckpoint(r) {
			v.checkpoint(r)
		}
		if v.pending == nil {
			v.pending = map[int64][]byte{}
		}
		if len(v.pending) < maxPending {
			v.pending[r.Seq] = r.Hash
		}
	}
	v.prevSeq, v.prevHash = r.Seq, r.Hash
}

// Records is how many records were added.
func (v *Verifier) Records() int64 { return v.n }

// Head is the last record's Seq and stored Hash (0 and nil before any).
func (v *Verifier) Head() (seq int64, hash []byte) { return v.prevSeq, v.prevHash }

// Breaks are the breaks found so far, in the order of the records.
func (v *Verifier) Breaks() []Break { return v.breaks }

// OK reports whether the chain held at every record so far.
func (v *Verifier) OK() bool { return len(v.breaks) == 0 }

// Problem sums the breaks up in one English line for a report: the first
// break, and how many there are in all; "" when the chain holds.
func (v *Verifier) Problem() string {
	switch len(v.breaks) {
	case 0:
		return ""
	case 1:
		return v.breaks[0].String()
	}
	return fmt.Sprintf("%s (%d breaks in all)", v.breaks[0], len(v.breaks))
}
