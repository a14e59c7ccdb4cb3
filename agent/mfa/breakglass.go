package mfa

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// BreakGlass is the root-only (on Windows SYSTEM/Administrators-only) file
// of hashed one-time recovery codes that the agent, pam_mamori.so and
// mamori-cp.dll consume, so recovery works when the agent is down
// (docs/mfa.md, docs/windows.md). One line per unused code:
//
//	USER SALT_HEX HASH
//
// where HASH is $argon2id$v=19$m=…,t=…,p=…$SALT$KEY (mfabundle.HashCodeKDF:
// a salt per code) or, for codes issued before issue 14 item 8, hex
// SHA-256(salt || normalised code) under the user's SALT_HEX. A used code's
// line is removed and a line appended to PATH.used, so a bundle from the
// server (which may not know of the use yet) does not bring it back:
//
//	SHA256_HEX [USER SERVICE RHOST UNIX_SECONDS]
//
// (the first versions wrote the hash alone). The agent reports every use
// as an event; PATH.reported lists the code IDs it has reported, so a use
// by the module while the agent was down is reported when it is back
// (Verifier.ReportBreakGlass) and nothing twice.
// Writers take an exclusive flock on PATH.lock; the file is replaced by
// rename, so readers never see half a file. pam_mamori.c implements the
// same format, and so does agent/credprov/src/cpcore.c (cp_bg_take); change
// all three or none.
type BreakGlass struct {
	Path string
}

// breakGlassHash reports whether h fits a break-glass line: a hex
// SHA-256 (64 characters) or an argon2id string (mfabundle.HashCodeKDF)
// of at most MaxBreakGlassHash bytes without white space; pam_mamori.c
// reads the same.
func breakGlassHash(h string) bool {
	return len(h) <= MaxBreakGlassHash && mfabundle.ValidCodeHash(h)
}

// MaxBreakGlassHash bounds a hash on a break-glass line (pam_mamori.c's
// buffer).
const MaxBreakGlassHash = 200

// Replace writes the users' codes minus the used ones.
func (g *BreakGlass) Replace(users []*mamoriv1.MFAUserSecret) error {
	unlock, err := lockFile(g.Path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	used, err := g.used()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# mamori break-glass recovery codes: written by mamori-agent, consumed by pam_mamori.so. Do not edit.\n")
	for _, u := range users {
		if strings.ContainsAny(u.User, " \t\n") || len(u.RecoverySalt) == 0 {
			continue
		}
		for _, h := range u.RecoveryCodeHashes {
			if used[h] || !breakGlassHash(h) {
				continue
			}
			fmt.Fprintf(&b, "%s %s %s\n", u.User, hex.EncodeToString(u.RecoverySalt), h)
		}
	}
	return atomicfile.Write(g.Path, b.Bytes(), 0o600)
}

// Consume uses the user's recovery code norm (normalised) if the file
// holds it, and reports whether it did.
func (g *BreakGlass) Consume(user, norm string) (bool, error) {
	h, err := g.consume(user, norm)
	return h != "", err
}

// consume is Consume returning the used code's hash ("" if none), which
// names the code (mfabundle.CodeID) in the event that tells the server.
func (g *BreakGlass) consume(user, norm string) (string, error) {
	unlock, err := lockFile(g.Path + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	data, err := os.ReadFile(g.Path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var (
		keep  bytes.Buffer
		found string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if found == "" && len(f) == 3 && f[0] == user {
			// argon2id (mfabundle.HashCodeKDF) for codes issued since
			// issue 14 item 8, SHA-256 under the user's salt for older
			// ones (mfabundle.VerifyCode).
			if salt, err := hex.DecodeString(f[1]); err == nil && mfabundle.VerifyCode(f[2], salt, norm) {
				found = f[2]
				continue
			}
		}
		keep.WriteString(line)
		keep.WriteByte('\n')
	}
	if found == "" {
		return "", sc.Err()
	}
	// Used list first: a crash between the two leaves the code used.
	uf, err := os.OpenFile(g.Path+".used", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintf(uf, "%s %s - - %d\n", found, usedField(user), time.Now().Unix())
	if err == nil {
		err = uf.Sync()
	}
	uf.Close()
	if err != nil {
		return "", err
	}
	// The code is used from here on, whether or not the rewrite works.
	return found, atomicfile.Write(g.Path, keep.Bytes(), 0o600)
}

func (g *BreakGlass) used() (map[string]bool, error) {
	us, err := g.usedEntries()
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, u := range us {
		m[u.Hash] = true
	}
	return m, nil
}

// UsedCode is one line of PATH.used.
type UsedCode struct {
	Hash                 string
	User, Service, RHost string // "-" or empty when not known
	At                   time.Time
}

// maxUsedBytes bounds what is read of PATH.used and PATH.reported: a few
// hundred bytes a code, ten codes a user.
const maxUsedBytes = 4 << 20

// readSmall reads a file of this directory that has a bound: nil for a
// file that does not exist, an error for one larger than max (damage, not
// data to trust).
func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s is over %d bytes", path, max)
	}
	return data, err
}

func (g *BreakGlass) usedEntries() ([]UsedCode, error) {
	data, err := readSmall(g.Path+".used", maxUsedBytes)
	if err != nil {
		return nil, err
	}
	return parseUsed(data), nil
}

// parseUsed reads PATH.used: a line whose first field is not a code hash
// (breakGlassHash) is skipped (a torn append).
func parseUsed(data []byte) []UsedCode {
	var out []UsedCode
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		h := f[0]
		if !mfabundle.IsCodeKDF(h) {
			h = strings.ToLower(h)
		}
		if !breakGlassHash(h) {
			continue
		}
		u := UsedCode{Hash: h}
		if len(f) >= 5 {
			u.User, u.Service, u.RHost = f[1], f[2], f[3]
			if sec, err := strconv.ParseInt(f[4], 10, 64); err == nil && sec > 0 {
				u.At = time.Unix(sec, 0).UTC()
			}
		}
		out = append(out, u)
	}
	return out
}

// usedField makes a value one field of a .used line, as pam_mamori.c's
// used_field does.
func usedField(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if c <= ' ' || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// unreported returns the used codes whose IDs are not in PATH.reported.
func (g *BreakGlass) unreported() ([]UsedCode, error) {
	unlock, err := lockFile(g.Path + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	used, err := g.usedEntries()
	if err != nil || len(used) == 0 {
		return nil, err
	}
	data, err := readSmall(g.Path+".reported", maxUsedBytes)
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, id := range strings.Fields(string(data)) {
		done[id] = true
	}
	var out []UsedCode
	for _, u := range used {
		if id := mfabundle.CodeID(u.Hash); !done[id] {
			done[id] = true
			out = append(out, u)
		}
	}
	return out, nil
}

// markReported records that the uses with these code IDs are reported.
func (g *BreakGlass) markReported(ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	unlock, err := lockFile(g.Path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(g.Path+".reported", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(ids, "\n") + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
