package mfa

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// BreakGlass is the root-only file of hashed one-time recovery codes that
// both the agent and pam_mamori.so consume, so recovery works when the
// agent is down (docs/mfa.md). One line per unused code:
//
//	USER SALT_HEX SHA256_HEX
//
// where SHA256_HEX = SHA-256(salt || normalised code). A used code's
// line is removed and its hash appended to PATH.used, so a bundle from the
// server (which may not know of the use yet) does not bring it back.
// Writers take an exclusive flock on PATH.lock; the file is replaced by
// rename, so readers never see half a file. pam_mamori.c implements the
// same format; change both or neither.
type BreakGlass struct {
	Path string
}

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
			if used[h] || len(h) != 64 {
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
			if salt, err := hex.DecodeString(f[1]); err == nil {
				h := mfabundle.HashRecoveryCode(salt, norm)
				if subtle.ConstantTimeCompare([]byte(h), []byte(f[2])) == 1 {
					found = h
					continue
				}
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
	_, err = uf.WriteString(found + "\n")
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
	data, err := os.ReadFile(g.Path + ".used")
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(data)) {
		m[l] = true
	}
	return m, nil
}
