package loginmfa

import (
	"bytes"
	"encoding/binary"
	"time"
)

// Monitor mode reads the login records in /var/log/wtmp (glibc's struct
// utmp, 384 bytes each on 64-bit Linux) to say which logins pam_mamori.so
// would have refused: a login of a user who has no second factor enrolled
// on this terminal. What this cannot see, and docs/mfa.md says so: failed
// logins (they are not in wtmp), logins that do not write wtmp (su, sudo,
// most graphical screen unlocks, `ssh host command` without a tty), and
// enrolled users who would have typed a wrong code. wtmp is written by
// root-owned programs and can be edited by root.

// UtmpSize is sizeof(struct utmp) on 64-bit glibc (x86_64, aarch64).
const UtmpSize = 384

const utUserProcess = 7

// Login is one USER_PROCESS record.
type Login struct {
	User, Line, Host string
	At               time.Time
}

// ParseWtmp parses whole records from b (little-endian, as on x86_64 and
// aarch64) and returns the logins and how many bytes it consumed; a
// trailing partial record is left for the next read.
func ParseWtmp(b []byte) ([]Login, int) {
	var out []Login
	n := 0
	for len(b)-n >= UtmpSize {
		r := b[n : n+UtmpSize]
		n += UtmpSize
		if int16(binary.LittleEndian.Uint16(r[0:])) != utUserProcess {
			continue
		}
		user := cstr(r[44:76])
		if user == "" {
			continue
		}
		sec := int32(binary.LittleEndian.Uint32(r[340:]))
		usec := int32(binary.LittleEndian.Uint32(r[344:]))
		out = append(out, Login{User: user, Line: cstr(r[8:40]), Host: cstr(r[76:332]),
			At: time.Unix(int64(sec), int64(usec)*1000).UTC()})
	}
	return out, n
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// AppendUtmp appends a USER_PROCESS record (for tests and fixtures).
func AppendUtmp(dst []byte, l Login) []byte {
	var r [UtmpSize]byte
	binary.LittleEndian.PutUint16(r[0:], utUserProcess)
	copy(r[8:40], l.Line)
	copy(r[44:76], l.User)
	copy(r[76:332], l.Host)
	binary.LittleEndian.PutUint32(r[340:], uint32(l.At.Unix()))
	binary.LittleEndian.PutUint32(r[344:], uint32(l.At.Nanosecond()/1000))
	return append(dst, r[:]...)
}
