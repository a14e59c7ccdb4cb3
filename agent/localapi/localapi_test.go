package localapi

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/agent/mfa"
)

func TestParseRequest(t *testing.T) {
	good, _ := AppendRequest(nil, Request{User: "tanaka", Service: "sshd", RHost: "10.0.0.9", Code: "123456"})
	tests := []struct {
		name string
		b    []byte
		want Request
		err  bool
	}{
		{"good", good[4:], Request{Version: 1, Op: OpVerify, User: "tanaka", Service: "sshd", RHost: "10.0.0.9", Code: "123456"}, false},
		{"v2 method?", []byte{2, 1, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0}, Request{Version: 2, Op: OpMethod, User: "a"}, false},
		{"v2 verify PIN", []byte{2, 2, 1, 0, 1, 'a', 0, 0, 0, 0, 0, 2, '4', '2'}, Request{Version: 2, Op: OpVerify, Method: mfa.MethodPIN, User: "a", Code: "42"}, false},
		{"v2 unknown op", []byte{2, 3, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0}, Request{}, true},
		{"v2 unknown method", []byte{2, 2, 7, 0, 1, 'a', 0, 0, 0, 0, 0, 0}, Request{}, true},
		{"v2 method? with a code", []byte{2, 1, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 1, '1'}, Request{}, true},
		{"v2 truncated header", []byte{2, 2}, Request{}, true},
		{"empty", nil, Request{}, true},
		{"wrong version", append([]byte{3}, good[5:]...), Request{}, true},
		{"truncated", good[4 : len(good)-1], Request{}, true},
		{"trailing byte", append(bytes.Clone(good[4:]), 0), Request{}, true},
		{"field longer than the rest", []byte{1, 0, 9, 'a'}, Request{}, true},
		{"empty user", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, Request{}, true},
		{"control character", []byte{1, 0, 2, 'a', '\n', 0, 0, 0, 0, 0, 0}, Request{}, true},
		{"empty optional fields", []byte{1, 0, 1, 'a', 0, 0, 0, 0, 0, 0}, Request{Version: 1, Op: OpVerify, User: "a"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.b)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("ParseRequest = %+v, %v; want %+v, err=%v", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := ReadRequest(bytes.NewReader([]byte{0, 0, 0x10, 0})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized frame: %v", err)
	}
	if _, err := AppendRequest(nil, Request{User: strings.Repeat("a", MaxField+1)}); err == nil {
		t.Fatal("oversized field encoded")
	}
}

func FuzzParseRequest(f *testing.F) {
	good, _ := AppendRequest(nil, Request{User: "tanaka", Service: "login", RHost: "", Code: "ABCDE-FGHJK"})
	f.Add(good[4:])
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{2, 2, 1, 0, 1, 'a', 0, 0, 0, 0, 0, 2, '4', '2'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		again, err := AppendRequest(nil, r)
		if err != nil || !bytes.Equal(again[4:], b) {
			t.Fatalf("round trip of %q: %q, %v", b, again, err)
		}
	})
}

type fixedVerifier struct {
	v    mfa.Verdict
	seen []mfa.Attempt
}

func (f *fixedVerifier) Method(_ context.Context, user string) mfa.Method {
	if user == "pin-user" {
		return mfa.MethodPIN
	}
	return mfa.MethodTOTP
}

func (f *fixedVerifier) Verify(_ context.Context, a mfa.Attempt) mfa.Verdict {
	f.seen = append(f.seen, a)
	return f.v
}
