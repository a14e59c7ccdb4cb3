package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvFile is the environment file the Linux packages write and
// mamori-agent.service reads (EnvironmentFile=).
const EnvFile = "/etc/default/mamori-agent"

// maxEnvFile bounds what ForgetToken reads.
const maxEnvFile = 1 << 20

// ForgetToken removes the enrolment token from where the installers left
// it, once the terminal is enrolled: the MAMORI_TOKEN value in envFile
// (the .deb/.rpm; "" skips it) and, on Windows, the Token value under
// HKLM\SOFTWARE\mamori (the MSI). The agent never needs the token again:
// it authenticates with its device key from then on. debconf's copy is
// cleared by the .deb's postinst on every run. A missing file or value is
// not an error; nothing is written when there is no token to remove.
func ForgetToken(envFile string) error {
	var errs []error
	if envFile != "" {
		errs = append(errs, forgetEnvFile(envFile))
	}
	errs = append(errs, forgetRegistryToken())
	return errors.Join(errs...)
}

func forgetEnvFile(p string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forget token in %s: %w", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("forget token in %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("forget token in %s: not a regular file", p)
	}
	b := make([]byte, maxEnvFile+1)
	n, _ := f.Read(b)
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	f.Close()
	if n > maxEnvFile {
		return fmt.Errorf("forget token in %s: larger than %d bytes, left alone", p, maxEnvFile)
	}
	out, changed := StripToken(b[:n])
	if !changed {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".mamori-tmp")
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()&0o600); err != nil {
		return fmt.Errorf("forget token in %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("forget token in %s: %w", p, err)
	}
	return nil
}

// tokenRemoved replaces the assignment in the environment file.
const tokenRemoved = "# MAMORI_TOKEN removed by mamori-agent after enrolment: the terminal authenticates with its device key now.\nMAMORI_TOKEN=\n"

// StripToken empties every MAMORI_TOKEN assignment of an environment
// file in systemd's EnvironmentFile syntax (optionally "export "), with
// its quoted or backslash-continued lines. It reports whether it changed
// anything: an empty MAMORI_TOKEN= is left as it is.
func StripToken(b []byte) ([]byte, bool) {
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	changed := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimLeft(l, " \t")
		t = strings.TrimPrefix(t, "export ")
		t = strings.TrimLeft(t, " \t")
		v, ok := strings.CutPrefix(t, EnvToken)
		if ok {
			v = strings.TrimLeft(v, " \t")
			v, ok = strings.CutPrefix(v, "=")
		}
		if !ok {
			out.WriteString(l)
			continue
		}
		// The value runs on while a quote is open or the line ends in
		// an unquoted backslash (systemd's parser); take those lines too.
		for q := openQuote(v); i+1 < len(lines); q = openQuote(v) {
			if q == 0 && !strings.HasSuffix(strings.TrimRight(v, "\r\n"), "\\") {
				break
			}
			i++
			v += lines[i]
		}
		if strings.Trim(v, " \t\r\n'\"") == "" {
			out.WriteString(l)
			continue
		}
		out.WriteString(tokenRemoved)
		changed = true
	}
	if !changed {
		return b, false
	}
	return []byte(out.String()), true
}

// openQuote reports the quote left open at the end of a value (0: none).
func openQuote(v string) byte {
	var q byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case q == 0 && (c == '\'' || c == '"'):
			q = c
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && c == '\\':
			i++
		}
	}
	return q
}
