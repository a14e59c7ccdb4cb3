package ctl

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/i18n"
)

// statusError is the one place that turns a gRPC status into what the
// operator reads: what went wrong and what to do next. The server's own
// message is kept (sanitized) because it often names the missing role or
// the field at fault. The result is a server error (exit 1).
func (c *cli) statusError(server string, err error) error {
	st := status.Convert(err)
	detail := sanitizeText(st.Message())
	var id i18n.ID
	args := []any{detail}
	// A privileged user's temporary code (server/admin): the rule in the
	// user's language, the server's English detail after it.
	if strings.HasPrefix(detail, "privileged user ") && (st.Code() == codes.PermissionDenied || st.Code() == codes.InvalidArgument) {
		return rpcError{code: st.Code(), msg: c.p.Sprintf("ctl.mfa.temp.privileged", detail)}
	}
	switch st.Code() {
	case codes.Unauthenticated:
		id = "ctl.rpc.unauthenticated"
	case codes.PermissionDenied:
		id = "ctl.rpc.permission-denied"
	case codes.Unavailable:
		switch {
		case strings.Contains(detail, "does not match the pinned fingerprint"):
			id, args = "ctl.rpc.fingerprint-mismatch", []any{server}
		case strings.Contains(detail, "certificate signed by unknown authority"),
			strings.Contains(detail, "certificate is valid for"),
			strings.Contains(detail, "server certificate:"):
			id, args = "ctl.rpc.bad-certificate", []any{server, detail}
		default:
			id, args = "ctl.rpc.unavailable", []any{server, detail}
		}
	case codes.NotFound:
		id = "ctl.rpc.not-found"
	case codes.InvalidArgument, codes.OutOfRange:
		id = "ctl.rpc.invalid-argument"
	case codes.FailedPrecondition:
		id = "ctl.rpc.failed-precondition"
	case codes.Aborted, codes.AlreadyExists:
		id = "ctl.rpc.aborted"
	case codes.DeadlineExceeded:
		id, args = "ctl.rpc.deadline", []any{c.g.timeout}
	case codes.ResourceExhausted:
		id = "ctl.rpc.resource-exhausted"
	case codes.Unimplemented:
		id = "ctl.rpc.unimplemented"
	case codes.Canceled:
		id, args = "ctl.err.canceled", nil
	default:
		id, args = "ctl.rpc.other", []any{st.Code().String(), detail}
	}
	return rpcError{code: st.Code(), msg: c.p.Sprintf(id, args...)}
}

// rpcError is a mapped server error; code lets callers branch (policy set
// looks up the current version on a conflict).
type rpcError struct {
	code codes.Code
	msg  string
}

func (e rpcError) Error() string { return e.msg }
