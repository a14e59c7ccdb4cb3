// Package enroll is the agent's side of enrolment: make a device key and a
// CSR, present the enrolment token to AgentService.Enroll over a connection
// pinned to the CA fingerprint the installer carries, and store the
// certificate, CA, device ID and first policy in the state directory.
//
// Re-running enrolment on an enrolled terminal makes a new key and
// certificate. The request then carries a proof that this terminal holds
// the key of its current certificate (a signature over the new CSR), and
// the server keeps the device record by that proof (or by the TPM EK).
// A machine ID is only a hint: without a proof the server makes a new
// record flagged as a possible clone, for an officer to review. The old
// identity stays in place until the new one is complete.
//
// When the key is made in the TPM, enrolment is attested: the request
// carries the EK, a fresh AK and the AK's TPM2_Certify of the key; the
// server answers with a credential challenge, which this TPM activates,
// and the request is sent again with the answer on the same connection.
// A server that predates attestation ignores the evidence and answers with
// a certificate at once, which is accepted (Result.Attested is false).
package enroll

import (
	"context"
	"crypto"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/agent/transport"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/retryinfo"
	"github.com/mamori-dev/mamori/internal/tpm"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Errors a caller may branch on. Their texts say what to do.
var (
	ErrTokenRefused = errors.New("token refused: ask the helpdesk for a new enrolment token")
	ErrWrongCA      = errors.New("the server's CA does not match the pinned fingerprint: check --ca-fingerprint against the enrolment token screen, and that --server names the right server")
	ErrRevoked      = errors.New("this terminal was revoked on the server: ask the security officer to review it before enrolling again")
	ErrUnreachable  = errors.New("no server reachable: check --server, the network path and the firewall (TCP to the server port)")
	ErrAttestation  = errors.New("the server refused this terminal's TPM attestation: report this to the helpdesk with the agent log")
	// ErrKeyProof: the server refused the signature by this terminal's
	// current key that re-enrolment sends (the state directory may hold
	// another server's identity).
	ErrKeyProof = errors.New("the server refused this terminal's proof of its current device key: check --server, or report this to the helpdesk with the agent log")
	// ErrBusy: the server is enrolling as many terminals as it takes at
	// once (or this address or machine enrolled too often just now). It
	// is transient: Enroll waits the server's hint and tries again.
	ErrBusy = errors.New("the server is busy enrolling other terminals; retrying after the delay it asked for")
)

// DefaultBusyWait bounds how long Enroll keeps retrying a busy server.
const DefaultBusyWait = 5 * time.Minute

// Params are what enrolment needs.
type Params struct {
	// Servers are tried in order until one answers.
	Servers []string
	Token   config.Secret
	// CAFingerprint is the SHA-256 of the server CA, in any common form.
	CAFingerprint string
	// Facts describe this terminal; MachineId and Hostname are required.
	Facts *mamoriv1.DeviceFacts
	// CallTimeout bounds the call to each server; 0 means 30 s.
	CallTimeout time.Duration
	// Now is the clock for enrolled_at; nil means time.Now.
	Now func() time.Time
	// BusyWait bounds how long Enroll retries servers that answer busy
	// (ResourceExhausted with a retry hint); 0 means DefaultBusyWait.
	BusyWait time.Duration
	// Sleep waits d or until ctx ends, and Rand returns a number in
	// [0,1) for jitter; nil means the real ones. Tests replace them.
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64
}

// LogValue keeps the token out of logs even when Params is logged whole.
func (p Params) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("servers", p.Servers), slog.String("ca_fingerprint", p.CAFingerprint), slog.Any("token", p.Token))
}

// Validate checks the params.
func (p Params) Validate() error {
	var errs []error
	if len(p.Servers) == 0 {
		errs = append(errs, errors.New("no server given: pass --server HOST:PORT (or MAMORI_SERVER)"))
	}
	for _, s := range p.Servers {
		if err := config.CheckServer(s); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Token == "" {
		errs = append(errs, errors.New("no enrolment token given: pass --token (or MAMORI_TOKEN)"))
	}
	if p.CAFingerprint == "" {
		errs = append(errs, errors.New("no CA fingerprint given: pass --ca-fingerprint (or MAMORI_CA_FINGERPRINT)"))
	} else if _, err := pki.NormalizeFingerprint(p.CAFingerprint); err != nil {
		errs = append(errs, err)
	}
	if p.Facts == nil || p.Facts.MachineId == "" || p.Facts.Hostname == "" {
		errs = append(errs, errors.New("device facts lack a machine ID or hostname"))
	}
	return errors.Join(errs...)
}

// Result is a completed enrolment.
type Result struct {
	Identity *state.Identity
	// Policy is the first policy; it is already saved in the state dir.
	Policy *mamoriv1.Policy
	// Server is the address that answered.
	Server string
	// Attested is true when the server verified that the key is in the TPM.
	Attested bool
}

// attestation is the prover's side of one attested enrolment.
type attestation struct {
	att *tpm.Attestation
	ev  *mamoriv1.TpmAttestation
}

// Enroll enrols this terminal and stores the result in dir.
func Enroll(ctx context.Context, log *slog.Logger, dir *state.Dir, p Params) (*Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.CallTimeout <= 0 {
		p.CallTimeout = transport.DefaultCallTimeout
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.BusyWait <= 0 {
		p.BusyWait = DefaultBusyWait
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	fp, _ := pki.NormalizeFingerprint(p.CAFingerprint)
	key, err := dir.NewKey()
	if err != nil {
		// A TPM that is there but unusable (owner password set, TBS
		// blocked): the file key keeps the terminal managed, and the
		// key_storage fact tells the server, whose policy may refuse it.
		log.WarnContext(ctx, "cannot make the device key in the TPM; using a key file", "error", err)
		if key, err = dir.NewFileKey(); err != nil {
			return nil, fmt.Errorf("make device key: %w", err)
		}
	}
	saved := false
	if tk, ok := key.(*tpm.Key); ok {
		defer func() {
			if !saved {
				tk.Close()
			}
		}()
	}
	p.Facts = proto.CloneOf(p.Facts)
	p.Facts.KeyStorage = state.KeyStorageOf(key)
	csr, err := pki.NewCSR(key, p.Facts.Hostname)
	if err != nil {
		return nil, fmt.Errorf("make certificate request: %w", err)
	}
	proof := keyProof(ctx, log, dir, csr)
	var at *attestation
	if tk, ok := key.(*tpm.Key); ok {
		qd := sha256.Sum256(csr)
		a, ev, err := tpm.Attest(tk, qd[:])
		if err != nil {
			// The key is still in the TPM; the server records it as
			// not attested and its policy decides.
			log.WarnContext(ctx, "cannot attest the TPM device key; enrolling without attestation", "error", err)
		} else {
			defer a.Close()
			at = &attestation{att: a, ev: &mamoriv1.TpmAttestation{
				EkPublic: ev.EKPublic, EkCertificate: ev.EKCertificate, AkPublic: ev.AKPublic,
				KeyPublic: ev.KeyPublic, CertifyInfo: ev.CertifyInfo, CertifySignature: ev.CertifySignature,
			}}
		}
	}
	// A busy server is asked again after the delay it gives, with the
	// same key and CSR: the server counts a retried enrolment's token use
	// once, so retrying is safe even if an earlier answer was lost.
	giveUp := time.Now().Add(p.BusyWait)
	backoff := time.Second
	for {
		res, err := enrollOnce(ctx, log, dir, p, fp, key, csr, at, proof)
		if err == nil {
			saved = true
			return res, nil
		}
		if !errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return nil, err
		}
		// Never spin, whatever the hint says.
		wait := max(retryinfo.Wait(err, time.Duration(p.Rand()*float64(backoff)), p.Rand()), 100*time.Millisecond)
		if time.Now().Add(wait).After(giveUp) {
			return nil, fmt.Errorf("%w; gave up after %v", err, p.BusyWait)
		}
		log.InfoContext(ctx, "server busy enrolling; waiting before the next try", "retry_in", wait)
		if err := p.Sleep(ctx, wait); err != nil {
			return nil, err
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// enrollOnce tries each server once.
func enrollOnce(ctx context.Context, log *slog.Logger, dir *state.Dir, p Params, fp string, key crypto.Signer, csr []byte, at *attestation,
	proof *mamoriv1.KeyProof) (*Result, error) {
	var errs []error
	for _, addr := range p.Servers {
		resp, err := call(ctx, addr, fp, p, csr, at, proof)
		if err == nil {
			res, err := store(dir, addr, fp, p, key, resp)
			if err != nil {
				return nil, err
			}
			log.InfoContext(ctx, "enrolled", "server", addr, "device", res.Identity.Device.DeviceID,
				"policy_version", res.Policy.GetVersion(), "key_storage", p.Facts.KeyStorage, "attested", res.Attested)
			return res, nil
		}
		log.WarnContext(ctx, "enrolment attempt failed", "server", addr, "error", err)
		// Only an unreachable or busy server is a reason to try the next
		// one: a refused token or a wrong CA is the same answer everywhere.
		if !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrBusy) {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// keyProof signs the new CSR with the key of the identity this terminal
// already has, if any: the server's proof that this is the same device.
// Without a usable identity there is no proof (a first enrolment, or a
// re-imaged terminal: the server then makes a new record).
func keyProof(ctx context.Context, log *slog.Logger, dir *state.Dir, csr []byte) *mamoriv1.KeyProof {
	prev, err := dir.LoadIdentity()
	if err != nil {
		if !errors.Is(err, state.ErrNotEnrolled) {
			log.WarnContext(ctx, "the current identity is unreadable; enrolling without proof of it (the server makes a new device record)", "error", err)
		}
		return nil
	}
	if c, ok := prev.Key.(interface{ Close() error }); ok {
		defer c.Close()
	}
	sig, err := prev.Key.Sign(crand.Reader, pki.ReenrollDigest(csr), crypto.SHA256)
	if err != nil {
		log.WarnContext(ctx, "cannot sign with the current device key; enrolling without proof of it (the server makes a new device record)", "error", err)
		return nil
	}
	return &mamoriv1.KeyProof{Certificate: prev.Cert.Raw, Signature: sig}
}

func call(ctx context.Context, addr, fp string, p Params, csr []byte, at *attestation, proof *mamoriv1.KeyProof) (*mamoriv1.EnrollResponse, error) {
	var mu sync.Mutex
	var seenCA string // fingerprint of the CA the server offered
	tlsCfg, err := pki.PinnedTLSConfig(fp, transport.ServerName(addr), nil)
	if err != nil {
		return nil, err
	}
	verify := tlsCfg.VerifyConnection
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if errors.Is(err, pki.ErrFingerprintMismatch) && len(cs.PeerCertificates) > 0 {
			mu.Lock()
			seenCA = pki.Fingerprint(cs.PeerCertificates[len(cs.PeerCertificates)-1].Raw)
			mu.Unlock()
		}
		return err
	}
	cc, err := transport.Dial(addr, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, p.CallTimeout)
	defer cancel()
	req := &mamoriv1.EnrollRequest{
		Token:    p.Token.Reveal(),
		Csr:      csr,
		Facts:    p.Facts,
		KeyProof: proof,
	}
	if at != nil {
		req.Attestation = at.ev
	}
	client := mamoriv1.NewAgentServiceClient(cc)
	resp, err := client.Enroll(cctx, req)
	if err == nil && resp.GetChallenge() != nil {
		if at == nil {
			return nil, fmt.Errorf("server %s sent a TPM challenge for a request without attestation", addr)
		}
		ch := resp.GetChallenge()
		secret, aerr := at.att.Activate(ch.GetCredentialBlob(), ch.GetEncryptedSecret())
		if aerr != nil {
			return nil, fmt.Errorf("%w (%v)", ErrAttestation, aerr)
		}
		// Same connection: the server that made the challenge checks it.
		req.Answer = &mamoriv1.ChallengeAnswer{State: ch.GetState(), Secret: secret}
		resp, err = client.Enroll(cctx, req)
	}
	if err == nil {
		return resp, nil
	}
	mu.Lock()
	wrongCA := seenCA
	mu.Unlock()
	if wrongCA != "" {
		return nil, fmt.Errorf("%w (server %s offers CA %s, pinned %s)", ErrWrongCA, addr, wrongCA, fp)
	}
	return nil, explain(addr, err)
}

// explain turns an RPC error into one a person can act on.
func explain(addr string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.PermissionDenied:
		if strings.Contains(st.Message(), "revoked") {
			return ErrRevoked
		}
		if strings.Contains(st.Message(), "TPM attestation refused") {
			return fmt.Errorf("%w (%s)", ErrAttestation, st.Message())
		}
		if strings.Contains(st.Message(), "key proof") {
			return fmt.Errorf("%w (%s)", ErrKeyProof, st.Message())
		}
		return ErrTokenRefused
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("%w (%s: %s)", ErrUnreachable, addr, st.Message())
	case codes.ResourceExhausted:
		// Keep the status: it carries the server's retry hint.
		return fmt.Errorf("%w (%s: %w)", ErrBusy, addr, err)
	case codes.InvalidArgument:
		return fmt.Errorf("the server refused the request (%s): update the agent or report this to the helpdesk", st.Message())
	}
	return fmt.Errorf("enrol at %s: %w", addr, err)
}

func store(dir *state.Dir, addr, fp string, p Params, key crypto.Signer, resp *mamoriv1.EnrollResponse) (*Result, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("server %s gave an unusable enrolment answer: "+format+"; nothing was changed", append([]any{addr}, args...)...)
	}
	ca, err := x509.ParseCertificate(resp.GetCaCertificate())
	if err != nil {
		return nil, bad("CA certificate: %v", err)
	}
	if pki.Fingerprint(ca.Raw) != fp {
		return nil, fmt.Errorf("%w (server %s returned CA %s, pinned %s)", ErrWrongCA, addr, pki.Fingerprint(ca.Raw), fp)
	}
	cert, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return nil, bad("device certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool(ca),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime: p.Now(),
	}); err != nil {
		return nil, bad("device certificate does not verify against the pinned CA: %v", err)
	}
	id, err := pki.DeviceIDFromCert(cert)
	if err != nil || id != resp.GetDeviceId() {
		return nil, bad("device certificate names device %q, answer says %q", id, resp.GetDeviceId())
	}
	if pol := resp.GetPolicy(); pol != nil {
		if err := policy.Validate(pol); err != nil {
			return nil, bad("policy: %v", err)
		}
	}
	ident := &state.Identity{
		Device: state.Device{DeviceID: id, Servers: p.Servers, EnrolledAt: p.Now().UTC()},
		Key:    key,
		Cert:   cert,
		CA:     ca,
	}
	if err := dir.SaveIdentity(ident); err != nil {
		return nil, err
	}
	if pol := resp.GetPolicy(); pol != nil {
		if err := dir.SavePolicy(pol); err != nil {
			return nil, err
		}
	}
	return &Result{Identity: ident, Policy: resp.GetPolicy(), Server: addr, Attested: resp.GetAttested()}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func pool(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}
