package mfa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/internal/atomicfile"
)

// Kinds of the PIN key events: a credential appearing on, changing on or
// leaving a terminal is evidence an auditor asks for, whoever made it
// (mamori-agent mfa pin-enroll / pin-remove, or someone with root and a
// text editor).
const (
	KindPINEnrolled = "mfa_pin_enrolled"
	KindPINRemoved  = "mfa_pin_removed"
)

// maxPINKeyFile bounds what the sweep reads of one key file; a PIN key
// blob is a few hundred bytes.
const maxPINKeyFile = 64 << 10

// ReportPINKeys reports every change of this terminal's PIN keys since the
// last report: mfa_pin_enrolled for a user with a new (or replaced) key,
// mfa_pin_removed for a user whose key is gone, with the key's SHA-256 so
// two enrolments can be told apart. What was reported is kept next to the
// keys (DIR.reported, user → key SHA-256); a change is reported at least
// once, and once only unless the agent stops between the event and saving
// that file. The agent calls it every round.
func (v *Verifier) ReportPINKeys(ctx context.Context) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.cfg.PINs
	if p == nil || p.Dir == "" {
		return
	}
	now, err := p.inventory()
	if err != nil {
		v.log.ErrorContext(ctx, "PIN keys not readable; changes are reported once they are", "error", err)
		return
	}
	reportedPath := filepath.Clean(p.Dir) + ".reported"
	before, err := readInventory(reportedPath)
	if err != nil {
		// Unreadable or damaged: start over, so every key present is
		// reported again rather than a change missed.
		v.log.WarnContext(ctx, "PIN key report file unreadable; reporting every key again", "error", err)
		before = map[string]string{}
	}
	if maps.Equal(before, now) {
		return
	}
	// done is what has been reported; it is saved even when an event
	// could not be (the rest is tried next round).
	done := maps.Clone(before)
	report := func() error {
		for _, u := range slices.Sorted(maps.Keys(now)) {
			if before[u] == now[u] {
				continue
			}
			attrs := map[string]string{"user": u, "key_sha256": now[u]}
			if before[u] != "" {
				attrs["replaced"] = before[u]
			}
			if err := v.emitErr(ctx, KindPINEnrolled, attrs); err != nil {
				return err
			}
			done[u] = now[u]
		}
		for _, u := range slices.Sorted(maps.Keys(before)) {
			if _, still := now[u]; still {
				continue
			}
			if err := v.emitErr(ctx, KindPINRemoved, map[string]string{"user": u, "key_sha256": before[u]}); err != nil {
				return err
			}
			delete(done, u)
		}
		return nil
	}
	if err := report(); err != nil {
		v.log.ErrorContext(ctx, "PIN key change not reported yet", "error", err)
	}
	b, err := json.Marshal(done)
	if err == nil {
		err = atomicfile.Write(reportedPath, b, 0o600)
	}
	if err != nil {
		v.log.ErrorContext(ctx, "PIN key report file not saved (changes may be reported twice)", "error", err)
	}
}

// inventory is user → hex SHA-256 of the key blob, for every USER.key in
// Dir whose name is a user name.
func (p *PINKeys) inventory() (map[string]string, error) {
	ents, err := os.ReadDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		user, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok || !e.Type().IsRegular() || !userName.MatchString(user) {
			continue
		}
		b, err := readSmall(filepath.Join(p.Dir, e.Name()), maxPINKeyFile)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue // removed since the directory was read
		}
		sum := sha256.Sum256(b)
		out[user] = hex.EncodeToString(sum[:])
	}
	return out, nil
}

func readInventory(path string) (map[string]string, error) {
	b, err := readSmall(path, 1<<20)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	if b == nil {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
