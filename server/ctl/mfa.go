package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// MFA limits, the same as the server's (server/mfa); checked here too so
// that a typo is caught before anything is sent.
const (
	maxSeedFile    = 1 << 20
	minTempCodeTTL = time.Minute
	maxTempCodeTTL = 24 * time.Hour
)

// MFAEnrollJSON is "mfa enroll -o json": field names are stable.
type MFAEnrollJSON struct {
	User string `json:"user"`
	// OtpauthURI holds the secret: shown once.
	OtpauthURI    string   `json:"otpauth_uri"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// MFATempCodeJSON is "mfa temp-code -o json".
type MFATempCodeJSON struct {
	User string `json:"user"`
	// Code is shown once.
	Code string `json:"code"`
	ID   string `json:"id"`
	// ExpiresAt is RFC 3339 UTC.
	ExpiresAt string `json:"expires_at"`
	// DeviceID is the terminal the code is bound to ("" for every one).
	DeviceID string `json:"device_id,omitempty"`
}

func (c *cli) mfaEnroll(ctx context.Context, args []string) error {
	const cmd = "mfa enroll"
	fs := c.newFlagSet(cmd)
	method := fs.String("method", "totp", "ctl.flag.mfa.method")
	replace := fs.Bool("replace", false, "ctl.flag.mfa.replace")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	if *method != "totp" {
		return c.usage(cmd, "ctl.err.mfa-method", *method)
	}
	user, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.EnrollMFAUser, &mamoriv1.EnrollMFAUserRequest{User: user, Replace: *replace})
	if err != nil {
		return err
	}
	if format == "json" {
		return plainJSON(c.o.Stdout, MFAEnrollJSON{User: resp.GetUser(), OtpauthURI: resp.GetOtpauthUri(), RecoveryCodes: resp.GetRecoveryCodes()})
	}
	w := c.o.Stdout
	fmt.Fprintln(w, sanitizeText(c.p.Sprintf("ctl.mfa.enroll.heading", resp.GetUser())))
	fmt.Fprintln(w)
	if qr, err := terminalQR(resp.GetOtpauthUri()); err == nil {
		fmt.Fprint(w, qr)
	} else {
		fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.enroll.no-qr"))
	}
	fmt.Fprintf(w, "\n  %s\n\n", sanitizeText(resp.GetOtpauthUri()))
	fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.enroll.recovery"))
	for _, rc := range resp.GetRecoveryCodes() {
		fmt.Fprintf(w, "  %s\n", sanitizeText(rc))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.next-report"))
	return nil
}

// terminalQR draws s as a QR code (error correction M) with half-block
// characters, two modules a line, light modules as full blocks so that it
// scans on the usual dark terminal; the four-module quiet zone is drawn.
func terminalQR(s string) (string, error) {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return "", err
	}
	return halfBlocks(q.Bitmap()), nil
}

// halfBlocks renders a bitmap (true = dark module) two rows per line:
// the upper half of a cell is the first row, the lower half the second.
func halfBlocks(bits [][]bool) string {
	var b strings.Builder
	light := func(y, x int) bool { return y >= len(bits) || !bits[y][x] }
	for y := 0; y < len(bits); y += 2 {
		for x := range bits[y] {
			switch top, bottom := light(y, x), light(y+1, x); {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (c *cli) mfaImport(ctx context.Context, args []string) error {
	const cmd = "mfa import"
	fs := c.newFlagSet(cmd)
	replace := fs.Bool("replace", false, "ctl.flag.mfa.import-replace")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	var r io.Reader
	name := pos[0]
	if name == "-" {
		r, name = c.o.Stdin, c.p.Sprintf("ctl.stdin")
	} else {
		f, err := os.Open(name)
		if err != nil {
			return c.usage(cmd, "ctl.err.seed-open", name, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return c.usage(cmd, "ctl.err.seed-dir", name)
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSeedFile+1))
	if err != nil {
		return c.usage(cmd, "ctl.err.seed-open", name, err)
	}
	if len(data) > maxSeedFile {
		return c.usage(cmd, "ctl.err.seed-too-large", name, maxSeedFile>>20)
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ImportMFASeedsResponse, error) {
		return call(ctx, c, cn, cn.admin.ImportMFASeeds, &mamoriv1.ImportMFASeedsRequest{Csv: data, Replace: *replace})
	}, func(resp *mamoriv1.ImportMFASeedsResponse) error {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.mfa.import.done", resp.GetImported()))
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.mfa.next-report"))
		return nil
	})
}

func (c *cli) mfaReset(ctx context.Context, args []string) error {
	const cmd = "mfa reset"
	fs := c.newFlagSet(cmd)
	reason := fs.String("reason", "", "ctl.flag.mfa.reason")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	user, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ResetMFAUserResponse, error) {
		return call(ctx, c, cn, cn.admin.ResetMFAUser, &mamoriv1.ResetMFAUserRequest{User: user, Reason: strings.TrimSpace(*reason)})
	}, func(resp *mamoriv1.ResetMFAUserResponse) error {
		fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.mfa.reset.done", user)))
		fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.mfa.reset.next", user)))
		return nil
	})
}

func (c *cli) mfaUnlock(ctx context.Context, args []string) error {
	const cmd = "mfa unlock"
	fs := c.newFlagSet(cmd)
	device := fs.String("device", "", "ctl.flag.mfa.device")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	user, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.UnlockMFAUserResponse, error) {
		return call(ctx, c, cn, cn.admin.UnlockMFAUser, &mamoriv1.UnlockMFAUserRequest{User: user, DeviceId: strings.TrimSpace(*device)})
	}, func(resp *mamoriv1.UnlockMFAUserResponse) error {
		if d := strings.TrimSpace(*device); d != "" {
			fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.mfa.unlock.device", user, d)))
		} else {
			fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.mfa.unlock.all", user)))
		}
		return nil
	})
}

func (c *cli) mfaTempCode(ctx context.Context, args []string) error {
	const cmd = "mfa temp-code"
	fs := c.newFlagSet(cmd)
	expires := fs.String("expires", "1h", "ctl.flag.mfa.expires")
	device := fs.String("device", "", "ctl.flag.mfa.temp-device")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	ttl, ok := parseTTL(*expires)
	if !ok {
		return c.usage(cmd, "ctl.err.bad-duration", *expires)
	}
	if ttl < minTempCodeTTL || ttl > maxTempCodeTTL {
		return c.usage(cmd, "ctl.err.temp-ttl-range", *expires)
	}
	user, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.IssueMFATempCode, &mamoriv1.IssueMFATempCodeRequest{User: user, ExpiresIn: durationpb.New(ttl), Device: *device})
	if err != nil {
		return err // a privileged user's refusal is worded in statusError
	}
	if format == "json" {
		return plainJSON(c.o.Stdout, MFATempCodeJSON{User: user, Code: resp.GetCode(), ID: resp.GetId(),
			ExpiresAt: resp.GetExpiresAt().AsTime().UTC().Format(time.RFC3339), DeviceID: resp.GetDeviceId()})
	}
	w := c.o.Stdout
	fmt.Fprintln(w, sanitizeText(c.p.Sprintf("ctl.mfa.temp.heading", user)))
	fmt.Fprintf(w, "  %s\n\n", sanitizeText(resp.GetCode()))
	fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.temp.expires", c.localTime(resp.GetExpiresAt())+" ("+c.ago(resp.GetExpiresAt())+")"))
	if d := resp.GetDeviceId(); d != "" {
		fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.temp.device", sanitizeText(d)))
	}
	return nil
}

func (c *cli) mfaList(ctx context.Context, args []string) error {
	return query(ctx, c, "mfa list", args, func(ctx context.Context, cn *conn) (*mamoriv1.ListMFAUsersResponse, error) {
		return call(ctx, c, cn, cn.admin.ListMFAUsers, &mamoriv1.ListMFAUsersRequest{})
	}, c.mfaListText)
}

func (c *cli) mfaListText(resp *mamoriv1.ListMFAUsersResponse) error {
	if len(resp.GetUsers()) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.mfa.list.none"))
		return nil
	}
	t := &table{header: []string{c.p.Sprintf("ctl.col.user"), c.p.Sprintf("ctl.col.method"), c.p.Sprintf("ctl.col.enrolled"),
		c.p.Sprintf("ctl.col.token-serial"), c.p.Sprintf("ctl.col.recovery-left"), c.p.Sprintf("ctl.col.temp-codes")}}
	for _, u := range resp.GetUsers() {
		t.add(u.GetUser(), c.mfaMethodName(u.GetMethod()), c.localTime(u.GetEnrolledAt()), orDash(u.GetTokenSerial()),
			strconv.Itoa(int(u.GetRecoveryCodesLeft())), strconv.Itoa(int(u.GetTempCodesActive())))
	}
	return t.write(c.o.Stdout)
}

func (c *cli) mfaMethodName(m string) string {
	switch m {
	case "totp":
		return c.p.Sprintf("ctl.mfa.method.totp")
	case "totp-hardware":
		return c.p.Sprintf("ctl.mfa.method.totp-hardware")
	case "none":
		return c.p.Sprintf("ctl.mfa.method.none")
	}
	return m
}
