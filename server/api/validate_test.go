package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Every method either service registers must have an access rule; a method
// without one would be refused, but a missing rule is a bug to catch here.
func TestMethodAccessCoversEveryMethod(t *testing.T) {
	for _, sd := range []struct {
		name    string
		methods []string
	}{
		{mamoriv1.AgentService_ServiceDesc.ServiceName, methodNames(mamoriv1.AgentService_ServiceDesc.Methods)},
		{mamoriv1.AdminService_ServiceDesc.ServiceName, methodNames(mamoriv1.AdminService_ServiceDesc.Methods)},
		{healthpb.Health_ServiceDesc.ServiceName, methodNames(healthpb.Health_ServiceDesc.Methods)},
	} {
		for _, m := range sd.methods {
			full := "/" + sd.name + "/" + m
			if _, ok := methodAccess[full]; !ok {
				t.Errorf("%s has no access rule", full)
			}
		}
	}
	if len(methodAccess) != len(mamoriv1.AgentService_ServiceDesc.Methods)+len(mamoriv1.AdminService_ServiceDesc.Methods)+
		len(healthpb.Health_ServiceDesc.Methods) {
		t.Errorf("access table has rules for methods that do not exist")
	}
}

func methodNames(ms []grpc.MethodDesc) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.MethodName)
	}
	return out
}

func FuzzValidateReport(f *testing.F) {
	seed, _ := proto.Marshal(&mamoriv1.ReportRequest{
		Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, Evidence: map[string]string{"k": "v"}}},
		Events:   []*mamoriv1.Event{{Id: "8d6f2a4e-5c1b-4f7e-9a3d-2b1c0e9f8a7d", Time: timestamppb.Now(), Kind: "x"}},
	})
	f.Add(seed)
	delta, _ := proto.Marshal(&mamoriv1.ReportRequest{
		StateDigest: bytes.Repeat([]byte{0xab}, 32), BaseDigest: bytes.Repeat([]byte{0x0f}, 32),
		Statuses: []*mamoriv1.ControlStatus{{Control: "media", State: 4}},
	})
	f.Add(delta)
	f.Add([]byte{})
	f.Add([]byte("\x12\x00\x1a\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r mamoriv1.ReportRequest
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		if err := validateReport(&r); err != nil {
			return
		}
		// What passes validation must be within the documented bounds.
		if (len(r.StateDigest) != 0 && len(r.StateDigest) != 32) || (len(r.BaseDigest) != 0 && len(r.BaseDigest) != 32) {
			t.Fatalf("accepted digests state=%x base=%x", r.StateDigest, r.BaseDigest)
		}
		state, base := reportDigests(&r)
		if (base == "") != (len(r.BaseDigest) == 0) || (len(r.StateDigest) == 0 && state != base) || len(state)%64 != 0 {
			t.Fatalf("digests %x, %x read as state %q base %q", r.StateDigest, r.BaseDigest, state, base)
		}
		if len(r.Statuses) > MaxStatuses || len(r.Events) > MaxEvents {
			t.Fatalf("accepted %d statuses, %d events", len(r.Statuses), len(r.Events))
		}
		for _, s := range r.Statuses {
			if len(s.DetailId) > MaxShortString || len(s.DetailArgs) > MaxDetailArgs || len(s.DetailParts) > MaxDetailParts {
				t.Fatalf("accepted detail_id of %d bytes with %d args, %d parts", len(s.DetailId), len(s.DetailArgs), len(s.DetailParts))
			}
			for _, p := range s.DetailParts {
				if len(p.GetId()) > MaxShortString || len(p.GetArgs()) > MaxDetailArgs {
					t.Fatalf("accepted a detail part of %d bytes with %d args", len(p.GetId()), len(p.GetArgs()))
				}
			}
		}
		for _, e := range r.Events {
			if len(e.Id) != 36 || e.Time == nil || len(e.Attributes) > MaxMapEntries {
				t.Fatalf("accepted bad event %v", e)
			}
		}
	})
}

// Invalid UTF-8 cannot pass through a Go gRPC client (proto3 strings), but
// another client may send it: validateReport refuses it in detail_id and
// detail_args as it does in detail.
func TestValidateReportDetailIDAndArgs(t *testing.T) {
	st := func(id string, args ...string) *mamoriv1.ReportRequest {
		return &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "media", State: 1, Detail: "d", DetailId: id, DetailArgs: args}}}
	}
	for _, tc := range []struct {
		name string
		req  *mamoriv1.ReportRequest
		ok   bool
	}{
		{"none", st(""), true},
		{"id and args", st("detail.media.udev-missing", "/etc/udev/rules.d/60-mamori.rules"), true},
		{"unknown id is fine", st("detail.from-a-newer-agent", "a", "b"), true},
		{"id not UTF-8", st("detail.\xff"), false},
		{"id too long", st(string(make([]byte, MaxShortString+1))), false},
		{"arg not UTF-8", st("detail.x", "ok", "\xfe"), false},
		{"arg too long", st("detail.x", string(make([]byte, MaxLongString+1))), false},
		{"too many args", st("detail.x", make([]string, MaxDetailArgs+1)...), false},
		{"most args", st("detail.x", make([]string, MaxDetailArgs)...), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateReport(tc.req)
			if (err == nil) != tc.ok {
				t.Fatalf("validateReport = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code %v, want InvalidArgument", status.Code(err))
			}
		})
	}
}

func TestStoreUnreachableIsUnavailable(t *testing.T) {
	s := &Server{core: core{log: slog.New(slog.DiscardHandler)}}
	dial := &net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("load policy: failed to connect: %w", dial), codes.Unavailable},
		{fmt.Errorf("commit report batch: %w", io.ErrUnexpectedEOF), codes.Unavailable},
		{fmt.Errorf("query: %w", syscall.ECONNRESET), codes.Unavailable},
		{errors.New("syntax error at or near"), codes.Internal},
		{store.ErrNotFound, codes.NotFound},
	} {
		if got := status.Code(s.toStatus(context.Background(), "/x", tc.err)); got != tc.want {
			t.Errorf("%v → %v, want %v", tc.err, got, tc.want)
		}
	}
}

// detail_parts: at most MaxDetailParts, each bounded as detail_id and
// detail_args are; anything else is refused with a clear status.
func TestValidateReportDetailParts(t *testing.T) {
	part := func(id string, args ...string) *mamoriv1.DetailPart { return &mamoriv1.DetailPart{Id: id, Args: args} }
	st := func(parts ...*mamoriv1.DetailPart) *mamoriv1.ReportRequest {
		return &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "media", State: 1, Detail: "2 problems: a; b",
			DetailId: "detail.problems", DetailArgs: []string{"2", "a; b"}, DetailParts: parts}}}
	}
	many := make([]*mamoriv1.DetailPart, MaxDetailParts+1)
	for i := range many {
		many[i] = part("detail.x")
	}
	for _, tc := range []struct {
		name string
		req  *mamoriv1.ReportRequest
		ok   bool
	}{
		{"two parts", st(part("detail.media.udev-missing", "/x"), part("detail.media.not-started")), true},
		{"most parts", st(many[:MaxDetailParts]...), true},
		{"too many parts", st(many...), false},
		{"part id too long", st(part("detail." + strings.Repeat("x", MaxShortString))), false},
		{"part id not UTF-8", st(part("detail.\xff")), false},
		{"part with too many args", st(part("detail.x", make([]string, MaxDetailArgs+1)...)), false},
		{"part arg too long", st(part("detail.x", strings.Repeat("x", MaxLongString+1))), false},
		{"part arg not UTF-8", st(part("detail.x", "<script>\xff")), false},
		{"nil part", st(nil), true},
	} {
		err := validateReport(tc.req)
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok && status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, err)
		}
	}
}
