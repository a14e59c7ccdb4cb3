package localapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Ask sends one request to the agent at path (socket or pipe) and returns
// the answer's value (a verdict or a method): the Go client, for the
// agent's own health check of its pipe (agent/loginmfa) and tests.
func Ask(ctx context.Context, path string, r Request) (byte, error) {
	req, err := AppendRequest(nil, r)
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, Timeout)
		defer cancel()
	}
	c, err := dial(ctx, path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var ans [6]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		return 0, fmt.Errorf("no answer: %w", err)
	}
	want := r.Version
	if want == 0 {
		want = Version
	}
	if binary.BigEndian.Uint32(ans[:4]) != 2 || ans[4] != want {
		return 0, errors.New("malformed answer")
	}
	return ans[5], nil
}

// Check asks the agent which factor a user who does not exist has: a
// well-formed answer within the deadline means the verifier answers.
func Check(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := Ask(ctx, path, Request{Version: Version2, Op: OpMethod, User: "-", Service: "mamori-health"})
	return err
}
