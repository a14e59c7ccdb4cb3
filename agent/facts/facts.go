// Package facts collects the device facts an agent reports: hostname, OS,
// OS version, kernel, machine ID, whether a TPM is present and where the
// device key lives.
//
// The parsers here are pure functions; facts_linux.go and facts_windows.go
// only read files and the registry. On Linux every path is read under a root
// directory, so tests run on a fixture tree (testdata/).
package facts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// KeyStorageFile is the key_storage fact for a software key in a file.
const KeyStorageFile = "file"

// maxFactLen bounds each fact (the server refuses longer ones).
const maxFactLen = 255

// Options says where and what to collect.
type Options struct {
	// Root is the filesystem root on Linux ("/" in production, a fixture
	// tree in tests). Ignored on Windows.
	Root string
	// AgentVersion is reported as agent_version.
	AgentVersion string
	// KeyStorage is "file" or "tpm". Empty means "file".
	KeyStorage string
}

// Collect gathers the facts of this machine. Facts that cannot be read are
// left empty and reported together in the error; the facts returned are
// usable unless the machine ID is missing (enrolment needs it).
func Collect(ctx context.Context, o Options) (*mamoriv1.DeviceFacts, error) {
	if o.KeyStorage == "" {
		o.KeyStorage = KeyStorageFile
	}
	f, err := collect(ctx, o)
	if f != nil {
		f.AgentVersion = o.AgentVersion
		f.KeyStorage = o.KeyStorage
		for _, p := range []*string{&f.Hostname, &f.OsVersion, &f.Kernel, &f.MachineId, &f.AgentVersion, &f.SerialNumber} {
			*p = clean(*p)
		}
	}
	return f, err
}

// ErrNoMachineID means no machine ID could be read.
var ErrNoMachineID = errors.New("no machine ID found (Linux: /etc/machine-id; run systemd-machine-id-setup)")

// ParseOSRelease parses an os-release file (os-release(5)): KEY=value lines,
// values optionally in single or double quotes with backslash escapes in
// double quotes, comments and blank lines ignored. Malformed lines are
// skipped; the result is never nil.
func ParseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !validKey(k) {
			continue
		}
		v, ok = unquote(v)
		if !ok {
			continue
		}
		out[k] = v
	}
	return out
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func unquote(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	q := v[0]
	if q != '"' && q != '\'' {
		if strings.ContainsAny(v, "\"'`$\\ \t") {
			return "", false
		}
		return v, true
	}
	if len(v) < 2 || v[len(v)-1] != q {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if q == '\'' {
		return inner, !strings.Contains(inner, "'")
	}
	var sb strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' {
			if i+1 == len(inner) {
				return "", false
			}
			i++
			c = inner[i]
		} else if c == '"' {
			return "", false
		}
		sb.WriteByte(c)
	}
	return sb.String(), true
}

// OSVersion picks a one-line OS version from os-release fields:
// PRETTY_NAME, else NAME and VERSION (or VERSION_ID), else "Linux".
func OSVersion(rel map[string]string) string {
	if v := rel["PRETTY_NAME"]; v != "" {
		return v
	}
	name := rel["NAME"]
	if name == "" {
		name = "Linux"
	}
	ver := rel["VERSION"]
	if ver == "" {
		ver = rel["VERSION_ID"]
	}
	return strings.TrimSpace(name + " " + ver)
}

// ParseMachineID checks and normalises a machine-id file: 32 hex digits
// (machine-id(5)), lower case.
func ParseMachineID(b []byte) (string, error) {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if len(s) != 32 {
		return "", fmt.Errorf("machine-id must be 32 hex digits, got %d characters", len(s))
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", errors.New("machine-id must be hex")
		}
	}
	if s == strings.Repeat("0", 32) {
		return "", errors.New("machine-id is all zeros (uninitialised)")
	}
	return s, nil
}

// WindowsVersion builds the os_version and kernel facts from the registry
// values of HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion, e.g.
// ("Windows 10 Pro 22H2", "19045.4170"). Windows 11 still reports
// ProductName "Windows 10 …"; a build of 22000 or later is Windows 11.
func WindowsVersion(productName, displayVersion, currentBuild string, ubr uint64) (osVersion, kernel string) {
	if b, err := strconv.Atoi(currentBuild); err == nil && b >= 22000 {
		productName = strings.Replace(productName, "Windows 10", "Windows 11", 1)
	}
	osVersion = strings.TrimSpace(productName + " " + displayVersion)
	kernel = currentBuild
	if currentBuild != "" && ubr > 0 {
		kernel += "." + strconv.FormatUint(ubr, 10)
	}
	return osVersion, kernel
}

// ParseSerial returns the SMBIOS serial number from product_serial, or ”
// for the placeholders vendors leave in it.
func ParseSerial(b []byte) string {
	s := strings.TrimSpace(string(b))
	switch strings.ToLower(s) {
	case "", "0", "none", "n/a", "default string", "to be filled by o.e.m.", "system serial number", "not specified", "0123456789":
		return ""
	}
	return s
}

// clean makes a fact safe to send: valid UTF-8, one line, bounded.
func clean(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for len(s) > maxFactLen {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// AdminGroups are the groups whose members administer a Linux terminal
// (Debian/Ubuntu: sudo, admin; RHEL: wheel).
var AdminGroups = []string{"sudo", "wheel", "admin"}

// MaxPrivilegedUsers bounds the privileged_users fact.
const MaxPrivilegedUsers = 64

// PrivilegedUsers lists the login names that are privileged on a Linux
// terminal, from its /etc/passwd and /etc/group: every name with uid 0,
// the members of AdminGroups, and the users whose primary group is one of
// them. Sorted, unique, at most MaxPrivilegedUsers; malformed lines are
// skipped. The server treats a temporary code for any of them as a
// privileged one (docs/mfa.md).
func PrivilegedUsers(passwd, group []byte) []string {
	set := map[string]bool{}
	adminGID := map[string]bool{}
	for _, l := range strings.Split(string(group), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) < 4 || !slices.Contains(AdminGroups, f[0]) {
			continue
		}
		adminGID[f[2]] = true
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); validLogin(m) {
				set[m] = true
			}
		}
	}
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) < 4 || !validLogin(f[0]) {
			continue
		}
		if f[2] == "0" || adminGID[f[3]] {
			set[f[0]] = true
		}
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	slices.Sort(out)
	if len(out) > MaxPrivilegedUsers {
		out = out[:MaxPrivilegedUsers]
	}
	return out
}

func validLogin(s string) bool {
	if s == "" || len(s) > 32 || strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == ':' || r == ',' || r >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
