package api_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestEnrollAttestationRefusals: bad evidence is refused before any
// challenge, an answer without evidence is malformed, and neither uses
// the token (the one-use token still enrols a software key afterwards).
func TestEnrollAttestationRefusals(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tok := h.Token(t, 1, 0)
	key, _ := pki.NewDeviceKey()
	csr, _ := pki.NewCSR(key, "pc-att")
	cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
	c := mamoriv1.NewAgentServiceClient(cc)
	facts := servertest.Facts("pc-att", "machine-attest-0001")
	tests := []struct {
		name string
		req  *mamoriv1.EnrollRequest
		code codes.Code
	}{
		{"garbage evidence", &mamoriv1.EnrollRequest{Token: tok, Csr: csr, Facts: facts,
			Attestation: &mamoriv1.TpmAttestation{EkPublic: []byte{1, 2, 3}}}, codes.PermissionDenied},
		{"answer without evidence", &mamoriv1.EnrollRequest{Token: tok, Csr: csr, Facts: facts,
			Answer: &mamoriv1.ChallengeAnswer{State: []byte("x"), Secret: []byte("y")}}, codes.InvalidArgument},
		{"oversized evidence", &mamoriv1.EnrollRequest{Token: tok, Csr: csr, Facts: facts,
			Attestation: &mamoriv1.TpmAttestation{EkCertificate: make([]byte, 9<<10)}}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Enroll(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Errorf("err = %v, want %v", err, tc.code)
			}
		})
	}
	resp, err := c.Enroll(ctx, &mamoriv1.EnrollRequest{Token: tok, Csr: csr, Facts: facts})
	if err != nil {
		t.Fatalf("software enrolment after refused attestations: %v", err)
	}
	if resp.GetAttested() || resp.GetChallenge() != nil || len(resp.GetCertificate()) == 0 {
		t.Errorf("software enrolment answer: attested %v challenge %v", resp.GetAttested(), resp.GetChallenge())
	}
}
