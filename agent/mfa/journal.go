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
// Why: every accepted code must be on disk before the login is allowed
// (else a crash lets the same code in twice). Rewriting the snapshot per
// login costs a file fsync, a rename and a directory fsync — on a busy disk
// the p99 of a login was 10–65 ms. Appending one line to a journal that
// already exists costs one fsync. The snapshot is rewritten (and the
// journal emptied) every journalCompactAt records and whenever a new
// bundle changes several users at once.
//
// Records carry a sequence number and the snapshot the last one it
// includes, so a crash between writing the snapshot and emptying the
// journal cannot replay an older state over a newer one (a LastStep going
// back would accept a used code again). A torn last line — the crash came
// mid-append — is a login that was never allowed: it is dropped. Any other
// damage refuses to start the verifier, as a damaged snapshot does.
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
}

type journalRecord struct {
	Seq   uint64     `json:"seq"`
	User  string     `json:"user"`
	State *userState `json:"state"`
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
// the journal for appending. A torn last record is cut off.
func (v *Verifier) loadState() error {
	dir := v.cfg.Dir
	snap := snapshot{Users: map[string]*userState{}}
	if b, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
		if snap, err = readSnapshot(b); err != nil {
			return fmt.Errorf("mfa: %s is damaged (delete it and %s to reset replay and lock-out state): %w", stateFile, journalFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mfa: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("mfa: %w", err)
	}
	good, n, seq, err := replayJournal(io.LimitReader(f, maxJournalBytes+1), snap)
	if err != nil {
		f.Close()
		return fmt.Errorf("mfa: %s is damaged (delete it and %s to reset replay and lock-out state): %w", journalFile, stateFile, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != good {
		// A torn last record: the login it was for was refused.
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("mfa: cut the torn end of %s: %w", journalFile, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("mfa: %w", err)
	}
	// The journal may have just been created: make its name durable once
	// here, so an append needs no directory fsync.
	if err := atomicfile.SyncDir(dir); err != nil {
		f.Close()
		return fmt.Errorf("mfa: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("mfa: %w", err)
	}
	v.state, v.seq, v.journal, v.journalLen = snap.Users, seq, f, n
	return nil
}

// replayJournal applies the records after snap.Seq to snap.Users. It
// returns the length of the well-formed prefix, the number of records in
// it and the last sequence number. Only the last line may be torn.
func replayJournal(r io.Reader, snap snapshot) (good int64, n int, seq uint64, err error) {
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
		if err := json.Unmarshal(bytes.TrimSpace(line), &rec); err != nil || rec.User == "" || rec.State == nil {
			// A whole line that does not parse: not a torn append.
			return 0, 0, 0, fmt.Errorf("record at byte %d does not parse", off)
		}
		if rec.Seq <= seq && rec.Seq > snap.Seq {
			return 0, 0, 0, fmt.Errorf("record at byte %d: sequence %d after %d", off, rec.Seq, seq)
		}
		if rec.Seq > snap.Seq {
			snap.Users[rec.User] = rec.State
			seq = rec.Seq
		}
		off += int64(len(line))
		n++
	}
}

// saveUser makes user's state durable: one appended journal record and
// one fsync; every journalCompactAt records a new snapshot instead.
// v.mu is held.
func (v *Verifier) saveUser(user string) error {
	if v.journal == nil || v.journalLen >= journalCompactAt {
		return v.saveState()
	}
	rec, err := json.Marshal(journalRecord{Seq: v.seq + 1, User: user, State: v.state[user]})
	if err != nil {
		return err
	}
	if _, err := v.journal.Write(append(rec, '\n')); err != nil {
		return v.journalBroken(err)
	}
	if err := v.journal.Sync(); err != nil {
		return v.journalBroken(err)
	}
	v.seq++
	v.journalLen++
	return nil
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
// journal. v.mu is held.
func (v *Verifier) saveState() error {
	b, err := json.Marshal(snapshot{Seq: v.seq, Users: v.state})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(v.cfg.Dir, stateFile), b, 0o600); err != nil {
		return err
	}
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
