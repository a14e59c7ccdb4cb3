package mfa

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mamori-dev/mamori/internal/atomicfile"
)

// The verifier's replay and lock-out state is a snapshot (stateFile) and a
// journal (journalFile) of the changes since.
//
// Why a journal: rewriting the snapshot per attempt costs a file fsync, a
// rename and a directory fsync; appending one line costs one write. The
// snapshot is rewritten (and the journal emptied) every journalCompactAt
// records, whenever a new bundle changes several users at once, and at
// Close.
//
// Records carry a sequence number and the snapshot the last one it
// includes, so a crash between writing the snapshot and emptying the
// journal cannot replay an older state over a newer one (a LastStep going
// back would accept a used code again). A torn last line — the crash came
// mid-append — is an attempt that was never answered: it is dropped. Any
// other damage refuses to start the verifier, as a damaged snapshot does.
//
// # When an attempt's record must be on disk (issue #15: the fsync off the answer path)
//
// Every attempt that changes state has its record written (write(2), into
// the kernel's page cache) before it is answered, and a group-commit
// syncer (syncLoop) fsyncs the journal right after, one fsync for
// whatever accumulated. A killed agent — SIGKILL, a crash, a panic, the
// service stopped hard — loses nothing: the kernel writes what it was
// given. Only an operating-system crash or a power cut can lose records
// that were answered before their fsync, so what may be answered before
// its fsync is chosen so that losing it gives nobody anything:
//
//   - An allowed login (an accepted TOTP step, a recovery, temporary or
//     grace login) is durable before the answer, always: a crash must not
//     make a used code usable again. Concurrent attempts share the fsync.
//   - The failure that starts a user's run of failures (0 → 1) is durable
//     before its answer, and so is the one that locks the user out.
//   - The failures in between (2 … MaxFailures−1) are answered once the
//     run's first failure is durable, without waiting for their own
//     fsync.
//   - After a stop that was not clean (no Close: a crash, a kill, a power
//     cut), Open charges every user whose run had started — durable
//     failures ≥ 1 — as if it had reached MaxFailures−1: the most the lost
//     records could have held, since the failure that locks is never lost.
//     So a crash, however caused, never gives a guess back; the cost is
//     that a user who mistyped before the crash has one try left before
//     the lock-out afterwards.
//
// This is "count a crash as failures at restart", made exact by syncing
// the first failure of a run (which users may have lost records is then
// on disk) and the lock-out. Group commit alone does not help a single
// client, whose every answer would still wait for an fsync; write-ahead
// only at the lock-out threshold alone gives an attacker who can cut the
// power MaxFailures−1 fresh guesses per power cycle.
//
// Failures for user names this terminal does not know (unknown): they
// have nothing to guess, so they are counted in one aggregate (a single
// record, never a name), not per name, and lock nobody out.
//
// The bare-map snapshot of the first versions still loads.
const (
	journalFile      = "verify.log"
	journalCompactAt = 512
	// maxJournalBytes bounds what Open reads: a journal past this was not
	// written by us (compaction keeps it near journalCompactAt lines).
	maxJournalBytes = 64 << 20
)

// snapshot is stateFile's content. Files from before the journal hold the
// bare users map; readSnapshot takes both.
type snapshot struct {
	Seq   uint64                `json:"seq"`
	Users map[string]*userState `json:"users"`
	// Unknown is the aggregate of failures for user names the terminal
	// does not know.
	Unknown *userState `json:"unknown,omitempty"`
	// Clean: written by Close, the last thing the verifier did. Open
	// clears it on disk before any attempt; a snapshot without it (or
	// with journal records after it) was left by a stop that was not
	// clean.
	Clean bool `json:"clean,omitempty"`
}

type journalRecord struct {
	Seq  uint64 `json:"seq"`
	User string `json:"user,omitempty"`
	// Unknown: the record is the unknown-user aggregate's (User is "").
	Unknown bool       `json:"unknown,omitempty"`
	State   *userState `json:"state"`
}

// readSnapshot parses stateFile: the current format, or the bare map of
// the first versions (sequence 0).
func readSnapshot(b []byte) (snapshot, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return snapshot{}, err
	}
	if raw, ok := probe["seq"]; ok && len(raw) > 0 && raw[0] != '{' {
		var s snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return snapshot{}, err
		}
		if s.Users == nil {
			s.Users = map[string]*userState{}
		}
		return s, nil
	}
	s := snapshot{Users: map[string]*userState{}}
	return s, json.Unmarshal(b, &s.Users)
}

// loadState reads the snapshot and replays the journal over it, and opens
// the journal for appending. A torn last record is cut off. It reports
// whether the last stop was clean (Close).
func (v *Verifier) loadState() (clean bool, err error) {
	dir := v.cfg.Dir
	snap := snapshot{Users: map[string]*userState{}}
	if b, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
		if snap, err = readSnapshot(b); err != nil {
			return false, fmt.Errorf("mfa: %s is damaged (delete it and %s to reset replay and lock-out state): %w", stateFile, journalFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("mfa: %w", err)
	} else {
		snap.Clean = true // nothing was ever recorded here
	}
	f, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("mfa: %w", err)
	}
	snapSeq := snap.Seq
	good, n, seq, err := replayJournal(io.LimitReader(f, maxJournalBytes+1), &snap)
	if err != nil {
		f.Close()
		return false, fmt.Errorf("mfa: %s is damaged (delete it and %s to reset replay and lock-out state): %w", journalFile, stateFile, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != good {
		// A torn last record: the attempt it was for was never answered.
		if err := f.Truncate(good); err != nil {
			f.Close()
			return false, fmt.Errorf("mfa: cut the torn end of %s: %w", journalFile, err)
		}
	}
	// What a killed agent wrote is in the page cache, not necessarily on
	// disk: make it durable before anything builds on it.
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("mfa: %w", err)
	}
	// The journal may have just been created: make its name durable once
	// here, so an append needs no directory fsync.
	if err := atomicfile.SyncDir(dir); err != nil {
		f.Close()
		return false, fmt.Errorf("mfa: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return false, fmt.Errorf("mfa: %w", err)
	}
	if snap.Unknown == nil {
		snap.Unknown = &userState{}
	}
	v.state, v.unknown, v.seq, v.journal, v.journalLen = snap.Users, snap.Unknown, seq, f, n
	v.synced = seq
	return snap.Clean && seq == snapSeq, nil
}

// chargeUncleanStop is the charge for a stop that was not clean (see the
// top of this file): every run of failures that had started is taken to
// have reached MaxFailures−1. It returns whether anything changed. v.mu
// is held (or v not yet shared).
func (v *Verifier) chargeUncleanStop() (users int) {
	worst := v.cfg.MaxFailures - 1
	charge := func(st *userState) bool {
		if st == nil || st.Failures < 1 || st.Failures >= worst {
			return false
		}
		st.Failures = worst
		return true
	}
	for _, st := range v.state {
		if charge(st) {
			users++
		}
	}
	charge(v.unknown) // counted alike, though it locks nobody out
	return users
}

// replayJournal applies the records after snap.Seq to snap. It returns
// the length of the well-formed prefix, the number of records in it and
// the last sequence number. Only the last line may be torn.
func replayJournal(r io.Reader, snap *snapshot) (good int64, n int, seq uint64, err error) {
	seq = snap.Seq
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for {
		line, rerr := br.ReadBytes('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return 0, 0, 0, rerr
		}
		if off+int64(len(line)) > maxJournalBytes {
			return 0, 0, 0, fmt.Errorf("longer than %d bytes", maxJournalBytes)
		}
		complete := len(line) > 0 && line[len(line)-1] == '\n'
		if !complete {
			// EOF: nothing more, or a torn last line (dropped).
			return off, n, seq, nil
		}
		var rec journalRecord
		if err := json.Unmarshal(bytes.TrimSpace(line), &rec); err != nil || rec.State == nil ||
			(rec.User == "") == !rec.Unknown {
			// A whole line that does not parse: not a torn append.
			return 0, 0, 0, fmt.Errorf("record at byte %d does not parse", off)
		}
		if rec.Seq <= seq && rec.Seq > snap.Seq {
			return 0, 0, 0, fmt.Errorf("record at byte %d: sequence %d after %d", off, rec.Seq, seq)
		}
		if rec.Seq > snap.Seq {
			if rec.Unknown {
				snap.Unknown = rec.State
			} else {
				snap.Users[rec.User] = rec.State
			}
			seq = rec.Seq
		}
		off += int64(len(line))
		n++
	}
}

// record appends user's state (the unknown-user aggregate when user is
// "") to the journal — written, not yet synced — and returns its sequence
// number; every journalCompactAt records a new snapshot instead, which is
// durable at once. The caller decides whether to wait for it
// (waitDurable). v.mu is held.
func (v *Verifier) record(user string) (uint64, error) {
	if v.closed {
		return 0, errClosed
	}
	if v.journal == nil || v.journalLen >= journalCompactAt {
		if err := v.saveState(); err != nil {
			return 0, err
		}
		return v.seq, nil
	}
	rec := journalRecord{Seq: v.seq + 1, User: user, State: v.state[user]}
	if user == "" {
		rec.Unknown, rec.State = true, v.unknown
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	if _, err := v.journal.Write(append(b, '\n')); err != nil {
		if err := v.journalBroken(err); err != nil {
			return 0, err
		}
		return v.seq, nil
	}
	v.seq++
	v.journalLen++
	v.kickSync()
	return v.seq, nil
}

// saveUser makes user's state durable before it returns. v.mu is held; it
// is released while waiting for the fsync.
func (v *Verifier) saveUser(user string) error {
	seq, err := v.record(user)
	if err != nil {
		return err
	}
	return v.waitDurable(seq)
}

var errClosed = errors.New("mfa: verifier closed")

// kickSync starts the group-commit syncer unless it runs. v.mu is held.
func (v *Verifier) kickSync() {
	if v.syncing || v.synced >= v.seq {
		return
	}
	v.syncing = true
	go v.syncLoop()
}

// syncLoop fsyncs the journal until every record written is durable: one
// fsync covers every record written before it began, so attempts that
// arrive while one runs share the next. It ends when there is nothing
// left, and is started again by the next record.
func (v *Verifier) syncLoop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		if v.synced >= v.seq || v.syncFailed >= v.seq || v.journal == nil {
			v.syncing = false
			v.cond.Broadcast()
			return
		}
		target, f := v.seq, v.journal
		v.mu.Unlock()
		err := f.Sync()
		v.mu.Lock()
		if err == nil {
			v.synced = max(v.synced, target)
		} else {
			// After a failed fsync what the journal holds on disk is
			// unknown: write everything as a snapshot instead.
			v.log.Error("mfa journal fsync failed; writing a snapshot instead", "error", err)
			if serr := v.saveState(); serr != nil {
				v.log.Error("mfa state not saved", "error", serr)
				v.syncFailed = max(v.syncFailed, target)
			}
		}
		v.cond.Broadcast()
	}
}

// waitDurable waits until the record seq is on disk. v.mu is held and is
// released while waiting (other attempts go on meanwhile and share the
// fsync).
func (v *Verifier) waitDurable(seq uint64) error {
	v.kickSync()
	for v.synced < seq && v.syncFailed < seq {
		v.cond.Wait()
	}
	if v.synced >= seq {
		return nil
	}
	return errors.New("mfa journal: fsync failed and the snapshot could not be written")
}

// journalBroken is a failed append: the file may end in a partial record,
// which Open would drop — but a later record after it would not parse.
// Rewrite everything as a snapshot instead, which also empties the
// journal.
func (v *Verifier) journalBroken(err error) error {
	if serr := v.saveState(); serr != nil {
		return fmt.Errorf("journal append: %w; snapshot: %w", err, serr)
	}
	return nil
}

// saveState writes all users' state as a new snapshot and empties the
// journal; everything recorded so far is durable when it returns nil.
// v.mu is held.
func (v *Verifier) saveState() error { return v.writeSnapshot(false) }

func (v *Verifier) writeSnapshot(clean bool) error {
	if v.closed && !clean {
		return errClosed // Close wrote the last snapshot
	}
	b, err := json.Marshal(snapshot{Seq: v.seq, Users: v.state, Unknown: v.unknown, Clean: clean})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(v.cfg.Dir, stateFile), b, 0o600); err != nil {
		return err
	}
	v.synced = v.seq
	v.cond.Broadcast() // those waiting for a record: it is in the snapshot
	if v.journal == nil {
		return nil
	}
	// The snapshot holds every record: empty the journal. Should this
	// fail, the records left are at or below the snapshot's sequence and
	// are skipped at the next start.
	if err := v.journal.Truncate(0); err != nil {
		return fmt.Errorf("empty %s: %w", journalFile, err)
	}
	if _, err := v.journal.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("empty %s: %w", journalFile, err)
	}
	if err := v.journal.Sync(); err != nil {
		return fmt.Errorf("empty %s: %w", journalFile, err)
	}
	v.journalLen = 0
	return nil
}

// Close makes everything durable, marks the stop clean (so the next Open
// charges no failures, see above) and closes the journal. Attempts after
// Close are refused. The agent calls it when it stops.
func (v *Verifier) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	for v.syncing {
		v.cond.Wait()
	}
	v.closed = true
	err := v.writeSnapshot(true)
	if v.journal != nil {
		if cerr := v.journal.Close(); err == nil {
			err = cerr
		}
		v.journal = nil
	}
	if err != nil {
		return fmt.Errorf("mfa: close: %w", err)
	}
	return nil
}
