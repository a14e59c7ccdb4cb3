package api_test

import (
	"crypto/ecdsa"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/retryinfo"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/servertest"
)

// enrollWith sends one enrolment with the given key over a fresh TLS
// connection, as an agent retrying after a lost answer does.
func enrollWith(t *testing.T, h *servertest.Harness, token string, key *ecdsa.PrivateKey, host, machine string) (*mamoriv1.EnrollResponse, error) {
	t.Helper()
	csr, err := pki.NewCSR(key, host)
	if err != nil {
		t.Fatal(err)
	}
	cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
	defer cc.Close()
	return mamoriv1.NewAgentServiceClient(cc).Enroll(ctx, &mamoriv1.EnrollRequest{Token: token, Csr: csr, Facts: servertest.Facts(host, machine)})
}

func wantRetryHint(t *testing.T, err error, atLeast time.Duration) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	d, ok := retryinfo.Delay(err)
	if !ok || d < atLeast {
		t.Fatalf("retry hint %v (present %v), want at least %v", d, ok, atLeast)
	}
}

// A retried enrolment (same token, machine and key; the first answer was
// lost) succeeds again on a one-use token without spending another use;
// a second machine then finds the token used up.
func TestEnrollRetryKeepsTokenUse(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tok := h.Token(t, 1, 0)
	key, _ := pki.NewDeviceKey()
	first, err := enrollWith(t, h, tok, key, "pc-retry", "machine-retry")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		again, err := enrollWith(t, h, tok, key, "pc-retry", "machine-retry")
		if err != nil {
			t.Fatalf("retry %d: %v", i+1, err)
		}
		if again.DeviceId != first.DeviceId {
			t.Fatalf("retry %d enrolled device %s, want %s", i+1, again.DeviceId, first.DeviceId)
		}
	}
	other, _ := pki.NewDeviceKey()
	_, err = enrollWith(t, h, tok, other, "pc-other", "machine-other")
	wantCode(t, err, codes.PermissionDenied)
	_, err = enrollWith(t, h, tok, other, "pc-retry", "machine-retry")
	wantCode(t, err, codes.PermissionDenied) // same machine, new key: a new use
	if f := fleet(t, h); f.Total != 1 {
		t.Errorf("fleet total %d, want 1", f.Total)
	}
}

// Past the per-machine burst one machine is refused at once with
// ResourceExhausted and a retry hint; another machine is not affected.
func TestEnrollPerMachineLimit(t *testing.T) {
	lim := api.EnrollLimits{PerMachineRate: 0.001, PerMachineBurst: 2, RetryAfter: time.Second}
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	tok := h.Token(t, 10, 0)
	key, _ := pki.NewDeviceKey()
	for i := range 2 {
		if _, err := enrollWith(t, h, tok, key, "pc-m", "machine-m"); err != nil {
			t.Fatalf("enrolment %d within the burst: %v", i+1, err)
		}
	}
	_, err := enrollWith(t, h, tok, key, "pc-m", "machine-m")
	wantRetryHint(t, err, 10*time.Second) // one token per 1000 s
	if _, err := enrollWith(t, h, tok, key, "pc-n", "machine-n"); err != nil {
		t.Fatalf("another machine: %v", err)
	}
}

// Past the per-source burst the address is refused, whatever the machine.
func TestEnrollPerSourceLimit(t *testing.T) {
	lim := api.EnrollLimits{PerSourceRate: 0.001, PerSourceBurst: 3, RetryAfter: 2 * time.Second}
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	tok := h.Token(t, 10, 0)
	for i := range 3 {
		key, _ := pki.NewDeviceKey()
		if _, err := enrollWith(t, h, tok, key, fmt.Sprintf("pc-s%d", i), fmt.Sprintf("machine-s%d", i)); err != nil {
			t.Fatalf("enrolment %d within the burst: %v", i+1, err)
		}
	}
	key, _ := pki.NewDeviceKey()
	_, err := enrollWith(t, h, tok, key, "pc-s9", "machine-s9")
	wantRetryHint(t, err, 2*time.Second)
	// A refusal writes nothing and spends no token use.
	if f := fleet(t, h); f.Total != 3 {
		t.Errorf("fleet total %d, want 3", f.Total)
	}
}

// The default limits are valid and let a rollout of 10,000 terminals from
// one address through in under 60 s.
func TestDefaultEnrollLimits(t *testing.T) {
	l := api.DefaultEnrollLimits()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if secs := float64(10000-l.PerSourceBurst) / l.PerSourceRate; secs >= 60 {
		t.Errorf("10,000 enrolments from one address take %.0f s at the default per-source limit", secs)
	}
	if l.MaxInFlight < 1 || l.PerMachineBurst < 3 {
		t.Errorf("defaults too tight: %+v (an attested enrolment is 2 calls, plus a retry)", l)
	}
	for _, bad := range []api.EnrollLimits{
		{PerSourceRate: -1}, {PerSourceRate: 1}, {PerMachineRate: 1}, {MaxInFlight: -1}, {RetryAfter: time.Hour},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
