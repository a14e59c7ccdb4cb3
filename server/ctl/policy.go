package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// MaxPolicyFile is the largest policy file policy set reads.
const MaxPolicyFile = 1 << 20

func (c *cli) policyGet(ctx context.Context, args []string) error {
	const cmd = "policy get"
	fs := c.newFlagSet(cmd)
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.GetPolicy, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		return err
	}
	// The policy is JSON either way: it is what policy set reads back.
	// -o table adds nothing a person needs; it prints the same.
	_ = format
	return writeProtoJSON(c.o.Stdout, resp.GetPolicy(), false)
}

func (c *cli) policySet(ctx context.Context, args []string) error {
	const cmd = "policy set"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	p, err := c.readPolicy(cmd, pos[0])
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.SetPolicy, &mamoriv1.SetPolicyRequest{
		Policy: p, ExpectedVersion: p.GetVersion(), Reason: reason,
	})
	var re rpcError
	if errors.As(err, &re) && (re.code == codes.Aborted || re.code == codes.FailedPrecondition) {
		cur, gerr := call(ctx, c, cn, cn.admin.GetPolicy, &mamoriv1.GetPolicyRequest{})
		if gerr == nil {
			return localizedError{c.p.Sprintf("ctl.policy.conflict", cur.GetPolicy().GetVersion())}
		}
		return localizedError{c.p.Sprintf("ctl.policy.conflict-unknown")}
	}
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.policy.set", p.GetVersion(), resp.GetPolicy().GetVersion()))
	return nil
}

// readPolicy reads and checks a policy file ("-" is standard input): at
// most MaxPolicyFile bytes of UTF-8 protojson with no unknown fields, and
// a version (the one it was read at).
func (c *cli) readPolicy(cmd, path string) (*mamoriv1.Policy, error) {
	var r io.Reader
	name := path
	if path == "-" {
		r, name = c.o.Stdin, c.p.Sprintf("ctl.stdin")
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, c.usage(cmd, "ctl.err.policy-open", path, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, c.usage(cmd, "ctl.err.policy-dir", path)
		}
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxPolicyFile+1))
	if err != nil {
		return nil, c.usage(cmd, "ctl.err.policy-open", name, err)
	}
	if len(b) > MaxPolicyFile {
		return nil, c.usage(cmd, "ctl.err.policy-too-large", name, MaxPolicyFile>>20)
	}
	if !utf8.Valid(b) {
		return nil, c.usage(cmd, "ctl.err.policy-utf8", name)
	}
	p := &mamoriv1.Policy{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, p); err != nil {
		return nil, c.usage(cmd, "ctl.err.policy-json", name, sanitizeText(err.Error()))
	}
	if p.GetVersion() <= 0 {
		return nil, c.usage(cmd, "ctl.err.policy-version", name)
	}
	return p, nil
}
