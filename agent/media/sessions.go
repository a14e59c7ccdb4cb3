package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
)

// Sessions tells which users have a session on the terminal. An exception
// (例外措置) bound to a user is honoured only while that user is logged in.
type Sessions interface {
	Users(ctx context.Context) ([]string, error)
}

// UtmpSessions reads the utmp file (Linux: /run/utmp): the users with a
// USER_PROCESS record, which login, sshd, and display managers that write
// utmp (gdm, lightdm) create. It does not ask systemd-logind, and a
// program that logs a user in without writing utmp is not seen: then the
// exception is not honoured (fail closed).
type UtmpSessions struct{ Path string }

// Users reads the file and returns the logged-in users, sorted, unique.
func (u UtmpSessions) Users(context.Context) ([]string, error) {
	b, err := os.ReadFile(u.Path)
	if err != nil {
		return nil, fmt.Errorf("read logged-in users: %w", err)
	}
	return ParseUtmp(b)
}

// utmp record layout of glibc on Linux (x86-64, arm64): 384 bytes.
const (
	utmpSize        = 384
	utmpUserProcess = 7
	utmpUserOffset  = 44
	utmpUserLen     = 32
)

// ParseUtmp reads glibc utmp records and returns the users of
// USER_PROCESS records, sorted and unique. A trailing partial record is an
// error (a torn or foreign file).
func ParseUtmp(b []byte) ([]string, error) {
	if len(b)%utmpSize != 0 {
		return nil, fmt.Errorf("utmp: %d bytes is not a whole number of %d-byte records", len(b), utmpSize)
	}
	var users []string
	for off := 0; off < len(b); off += utmpSize {
		r := b[off : off+utmpSize]
		if int16(binary.LittleEndian.Uint16(r[0:2])) != utmpUserProcess {
			continue
		}
		name := r[utmpUserOffset : utmpUserOffset+utmpUserLen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || policy.CheckUser(string(name)) != nil {
			continue
		}
		if !slices.Contains(users, string(name)) {
			users = append(users, string(name))
		}
	}
	slices.Sort(users)
	return users, nil
}

// noSessions is the platforms without a session source: exceptions bound
// to a user are never honoured there.
type noSessions struct{}

func (noSessions) Users(context.Context) ([]string, error) {
	return nil, errors.ErrUnsupported
}

// exceptionUsers reads who is logged in when an exception needs it; nil
// when none does or the source fails (then user-bound exceptions are not
// honoured).
func (m *Media) exceptionUsers(ctx context.Context, es []policy.Exception) []string {
	need := false
	for _, e := range es {
		need = need || e.User != ""
	}
	if !need {
		return nil
	}
	users, err := m.o.Sessions.Users(ctx)
	if err != nil {
		m.o.Log.WarnContext(ctx, "media: cannot tell who is logged in; exceptions bound to a user are not honoured", "error", err)
		return nil
	}
	return users
}

// activeExceptions keeps the exceptions in force at now; with checkUsers,
// those naming a user only when users holds that user.
func activeExceptions(es []policy.Exception, now time.Time, users []string, checkUsers bool) []policy.Exception {
	var out []policy.Exception
	for _, e := range es {
		if !e.ActiveAt(now) {
			continue
		}
		if checkUsers && e.User != "" && !slices.Contains(users, e.User) {
			continue
		}
		out = append(out, e)
	}
	return out
}
