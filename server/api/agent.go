package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/attest"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// Enroll exchanges an enrolment token and a CSR for a device certificate.
//
// Admission runs in an order where no caller spends another's budget
// (admission.go): the source address first, then a place in flight, then
// the token is checked, and only a valid token spends its own budget.
//
// Which device the certificate names is decided by proof (store.Enroll):
// the key of the device's current certificate (KeyProof), the same TPM
// EK (credential challenge answered), or a new record — flagged as a
// possible clone when its machine ID names an existing device.
//
// "Attested" means verified: the EK certificate chained to the configured
// vendor roots, or the EK is on the officer-approved list. A proven EK
// without either (a software TPM, a TPM without a known vendor) still
// names the same device, but its key is "TPM key, not attested".
func (s *AgentService) Enroll(ctx context.Context, req *mamoriv1.EnrollRequest) (*mamoriv1.EnrollResponse, error) {
	source := sourceKey(ctx)
	if err := s.admitSource(ctx, source); err != nil {
		return nil, err
	}
	if len(req.Token) > MaxTokenLength || !auth.WellFormed(req.Token, auth.EnrollmentTokenPrefix) {
		// Same answer as an unknown token: a prober learns nothing.
		return nil, s.tokenFailed(ctx, source, "malformed")
	}
	release, err := s.admitEnroll(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	tokenHash := auth.HashToken(req.Token)
	// A token refused by the store spends the source's failed-token
	// budget. The final call checks the token in its own transaction (no
	// extra read); the first call of an attested enrolment, which makes a
	// challenge and writes nothing, reads it first (CheckToken).
	tokenRefused := func(err error) error {
		switch {
		case errors.Is(err, store.ErrTokenUnknown):
			return s.tokenFailed(ctx, source, "unknown")
		case errors.Is(err, store.ErrTokenExpired):
			return s.tokenFailed(ctx, source, "expired")
		}
		return err
	}
	if len(req.Csr) == 0 || len(req.Csr) > MaxCSRBytes {
		return nil, invalidArg("csr is missing or larger than %d bytes", MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return nil, invalidArg("csr: %v", err)
	}
	keyHash := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	if err := validateFacts(req.Facts, true); err != nil {
		return nil, err
	}
	if req.Answer != nil && req.Attestation == nil {
		return nil, invalidArg("answer without attestation")
	}
	provenID, provenSerial, err := s.checkKeyProof(req)
	if err != nil {
		s.log.WarnContext(ctx, "re-enrolment proof refused", "source", source, "hostname", req.Facts.Hostname, "error", err)
		return nil, err
	}
	var (
		ekFingerprint string
		attested      bool
	)
	if req.Attestation != nil {
		checked, err := s.checkAttestation(req, csr)
		if err != nil {
			s.log.InfoContext(ctx, "attested enrolment refused", "hostname", req.Facts.Hostname, "error", err)
			return nil, err
		}
		if req.Answer == nil {
			// Step one: a challenge only this TPM can answer. No
			// certificate yet, and the token is not counted; it must be
			// valid, and spends its budget.
			if err := s.store.CheckToken(ctx, tokenHash, s.now()); err != nil {
				return nil, tokenRefused(err)
			}
			if err := s.admitToken(ctx, tokenHash); err != nil {
				return nil, err
			}
			ch, err := s.attest.Challenge(checked)
			if err != nil {
				return nil, fmt.Errorf("make enrolment challenge: %w", err)
			}
			return &mamoriv1.EnrollResponse{Challenge: &mamoriv1.EnrollChallenge{
				CredentialBlob: ch.CredentialBlob, EncryptedSecret: ch.EncryptedSecret, State: ch.State,
			}}, nil
		}
		if err := s.attest.Verify(checked, req.Answer.State, req.Answer.Secret); err != nil {
			s.log.InfoContext(ctx, "attested enrolment refused", "hostname", req.Facts.Hostname, "error", err)
			return nil, status.Error(codes.PermissionDenied, err.Error())
		}
		ekFingerprint = checked.EKFingerprint
		attested = checked.EKCertVerified
		if !attested {
			if attested, err = s.store.EKApproved(ctx, ekFingerprint); err != nil {
				return nil, err
			}
		}
	}
	now := s.now()
	detail := fmt.Sprintf("hostname=%s machine_id=%s source=%s", req.Facts.Hostname, req.Facts.MachineId, source)
	switch {
	case attested:
		detail += " key=tpm-attested ek=" + ekFingerprint
	case ekFingerprint != "":
		detail += " key=tpm-not-attested ek=" + ekFingerprint
	}
	newID := uuid.NewString()
	var res store.EnrollResult
	// The record commits with the enrolment. Which device it names, and
	// whether it is a re-enrolment, is known inside the transaction (Sign);
	// a retry of a lost answer adds retry=same-key (the store), the proof
	// that named the device proof=key|ek|retry, a claimed machine ID of
	// another device possible_clone_of=ID.
	err = s.audited(ctx, "device:"+newID, "device.enroll", newID, detail, func(actx context.Context) error {
		var err error
		res, err = s.store.Enroll(actx, store.EnrollParams{
			TokenHash:      tokenHash,
			Now:            now,
			Facts:          req.Facts,
			NewDeviceID:    newID,
			KeyHash:        keyHash[:],
			EKFingerprint:  ekFingerprint,
			KeyAttested:    attested,
			ProvenDeviceID: provenID,
			ProvenSerial:   provenSerial,
			Sign: func(deviceID string) ([]byte, string, error) {
				// The token was found valid by now (this transaction):
				// only now is its budget spent.
				if err := s.admitToken(actx, tokenHash); err != nil {
					return nil, "", err
				}
				store.AmendAudit(actx, func(r *store.AuditRecord) {
					r.Actor, r.Target, r.Action = "device:"+deviceID, deviceID, "device.enroll"
					if deviceID != newID {
						r.Action = "device.reenroll"
					}
				})
				der, serial, err := s.ca.SignDeviceCSR(req.Csr, deviceID, attested, now)
				if err != nil {
					return nil, "", invalidArg("%v", err)
				}
				return der, serial, nil
			},
		})
		return err
	})
	if errors.Is(err, store.ErrTokenUnknown) || errors.Is(err, store.ErrTokenExpired) {
		return nil, tokenRefused(err)
	}
	if err != nil {
		s.log.InfoContext(ctx, "enrolment refused", "source", source, "hostname", req.Facts.Hostname, "error", err)
		return nil, err
	}
	if res.CloneOf != "" {
		s.log.WarnContext(ctx, "enrolment named the machine ID of another device without proof: new device flagged as a possible clone",
			"device", res.Device.ID, "possible_clone_of", res.CloneOf, "source", source, "hostname", req.Facts.Hostname)
	}
	s.log.InfoContext(ctx, "device enrolled", "device", res.Device.ID, "hostname", req.Facts.Hostname, "reenrolled", res.Reenrolled,
		"by", res.By, "attested", attested)
	p, err := s.effectivePolicy(ctx, res.Device.ID, res.Device.Group, true)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.EnrollResponse{
		DeviceId:      res.Device.ID,
		Certificate:   res.CertDER,
		CaCertificate: s.ca.Cert.Raw,
		Policy:        p,
		Attested:      attested,
	}, nil
}

// MaxKeyProofField bounds the certificate and the signature of a key
// proof (a device certificate is under 1 KiB).
const MaxKeyProofField = 8 << 10

// checkKeyProof checks a re-enrolment's proof of the current key: the
// certificate is one this CA issued to a device (expired or not: a device
// offline past its certificate's life still holds its key), and the
// signature over the new CSR is by its key. Whether it is that device's
// current certificate, and whether the device is revoked, the store
// decides in its transaction. No proof: "", "", nil.
func (s *AgentService) checkKeyProof(req *mamoriv1.EnrollRequest) (deviceID, serial string, err error) {
	kp := req.GetKeyProof()
	if kp == nil {
		return "", "", nil
	}
	if len(kp.Certificate) == 0 || len(kp.Certificate) > MaxKeyProofField || len(kp.Signature) == 0 || len(kp.Signature) > MaxKeyProofField {
		return "", "", invalidArg("key proof: certificate and signature are required, each at most %d bytes", MaxKeyProofField)
	}
	cert, err := x509.ParseCertificate(kp.Certificate)
	if err != nil {
		return "", "", invalidArg("key proof certificate: %v", err)
	}
	if err := cert.CheckSignatureFrom(s.ca.Cert); err != nil {
		return "", "", status.Error(codes.PermissionDenied, "key proof: the certificate was not issued by this server's CA")
	}
	id, err := pki.DeviceIDFromCert(cert)
	if err != nil {
		return "", "", status.Error(codes.PermissionDenied, "key proof: the certificate names no device")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, pki.ReenrollDigest(req.Csr), kp.Signature) {
		return "", "", status.Error(codes.PermissionDenied, "key proof: the signature is not by the certificate's key over this request")
	}
	return id, pki.SerialHex(cert), nil
}

// MaxAttestationField bounds each field of a TPM attestation (an EK
// certificate is the largest, about 1.5 KiB).
const MaxAttestationField = 8 << 10

// checkAttestation runs the verifier's offline checks. The challenge is
// bound to the token and the CSR, so an answer cannot be moved to another
// request.
func (s *AgentService) checkAttestation(req *mamoriv1.EnrollRequest, csr *x509.CertificateRequest) (*attest.Checked, error) {
	a := req.Attestation
	for _, f := range [][]byte{a.EkPublic, a.EkCertificate, a.AkPublic, a.KeyPublic, a.CertifyInfo, a.CertifySignature,
		req.Answer.GetState(), req.Answer.GetSecret()} {
		if len(f) > MaxAttestationField {
			return nil, invalidArg("attestation field larger than %d bytes", MaxAttestationField)
		}
	}
	qd := sha256.Sum256(req.Csr)
	bind := sha256.New()
	bind.Write(auth.HashToken(req.Token))
	bind.Write(qd[:])
	c, err := s.attest.Check(attest.Evidence{
		EKPublic: a.EkPublic, EKCertificate: a.EkCertificate, AKPublic: a.AkPublic, KeyPublic: a.KeyPublic,
		CertifyInfo: a.CertifyInfo, CertifySignature: a.CertifySignature,
		CSRPublicKey: csr.PublicKey, QualifyingData: qd[:], Binding: bind.Sum(nil),
	})
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return c, nil
}

// Report stores a device's state and events. The device is the one named
// by the verified client certificate; the body cannot name another.
//
// Three kinds of report (issue #20, docs/performance.md):
//   - full (no base_digest; every older agent): every control's status,
//     evaluated as sent, through the group commit;
//   - differential (base_digest): only the changed controls; evaluated
//     against the stored controls with the changes laid over them, and
//     applied by the store only when it holds the base state (else
//     need_full, events kept);
//   - no change (a differential report with nothing in it, while this
//     server knows the device holds that state under its current policy):
//     answered at once, its last_seen written in a batch (reportSteady).
func (s *AgentService) Report(ctx context.Context, req *mamoriv1.ReportRequest) (*mamoriv1.ReportResponse, error) {
	dev, ok := deviceFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	neutraliseFacts(req.Facts)
	if err := validateReport(req); err != nil {
		return nil, err
	}
	// The device's effective policy: base + its group's override + its
	// exceptions in force. Compliance is judged against it.
	p, err := s.effectivePolicy(ctx, dev.ID, "", false)
	if err != nil {
		return nil, err
	}
	now := s.now()
	state, base := reportDigests(req)
	if base != "" {
		if resp, ok, err := s.reportSteady(ctx, dev, req, p, now, base); ok || err != nil {
			return resp, err
		}
		return s.reportDelta(ctx, dev, req, p, now, state, base)
	}
	verdict, reasons := compliance.Evaluate(p, req.Statuses, compliance.Identity{KeyAttested: dev.KeyAttested})
	resp, err := s.submit(ctx, dev, req, p, now, store.ReportInput{
		StateDigest: state,
		Statuses:    req.Statuses,
		Verdict:     verdict,
		Reasons:     reasons,
		// An empty report (or events only) keeps the verdict: it says
		// nothing about the controls (issue #14 item 10).
		KeepVerdict: len(req.Statuses) == 0,
	})
	if err == nil {
		s.witness(ctx, dev, req, resp)
	}
	return resp, err
}

// reportSteady answers a no-change report without a transaction when this
// server knows the device holds the report's state, its verdict was
// evaluated under the device's current effective policy, and no MFA bundle
// is due; ok is false when it cannot (the caller takes the slow path). The
// only write, last_seen, is batched (ingest.Heartbeats): the flush applies
// it only while the device still has this certificate and state and is not
// revoked, and sends a device whose touch did not apply back to the slow
// path.
func (s *AgentService) reportSteady(ctx context.Context, dev deviceIdentity, req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time, base string) (*mamoriv1.ReportResponse, bool, error) {
	if s.heartbeats == nil || len(req.Statuses) != 0 || req.Facts != nil || len(req.Events) != 0 ||
		(len(req.StateDigest) != 0 && !bytes.Equal(req.StateDigest, req.BaseDigest)) {
		return nil, false, nil
	}
	known, ok := s.states.get(dev.ID)
	if !ok || known.digest != base || known.verdictPolicy != p.Digest || known.serial != dev.Serial {
		return nil, false, nil
	}
	resp := s.answer(req, p, now)
	b, err := s.mfaBundle(ctx, dev, req, p, now)
	if err != nil || b != nil {
		// A bundle goes out only after the store has checked the device
		// in a transaction (revocation): the slow path.
		return nil, false, nil
	}
	if err := s.heartbeats.Touch(store.Touch{DeviceID: dev.ID, CertSerial: dev.Serial, StateDigest: base, At: now}); err != nil {
		return nil, false, nil
	}
	s.metrics.steady.Add(1)
	return resp, true, nil
}

// reportDelta evaluates a differential report against the stored
// controls with the report's changes laid over them and submits the
// changes; the store applies them only when it holds the base state.
func (s *AgentService) reportDelta(ctx context.Context, dev deviceIdentity, req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time, state, base string) (*mamoriv1.ReportResponse, error) {
	d, err := s.store.GetDevice(ctx, dev.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Error(codes.Unauthenticated, "unknown device: enrol again")
	case err != nil:
		return nil, fmt.Errorf("read device %s: %w", dev.ID, err)
	}
	merged := make([]*mamoriv1.ControlStatus, 0, len(d.Controls)+len(req.Statuses))
	stored := make(map[string]bool, len(d.Controls))
	for _, r := range d.Controls {
		stored[r.GetStatus().GetControl()] = true
	}
	changed := make(map[string]bool, len(req.Statuses))
	for _, st := range req.Statuses {
		changed[st.Control] = true
		if d.StateDigest == base && !stored[st.Control] && p.Controls[st.Control] == nil && st.Control != policy.ControlAgent {
			// The base state is the one stored, which has no such
			// control, and the policy names none: not a change of this
			// device's state. Nothing is stored; the agent sends a full
			// report next (its events stay in its spool until then).
			return nil, invalidArg("differential report names control %q, which this device never reported and the policy does not know: send a full report", st.Control)
		}
	}
	for _, r := range d.Controls {
		if st := r.GetStatus(); st != nil && !changed[st.GetControl()] {
			merged = append(merged, st)
		}
	}
	merged = append(merged, req.Statuses...)
	verdict, reasons := compliance.Evaluate(p, merged, compliance.Identity{KeyAttested: dev.KeyAttested})
	return s.submit(ctx, dev, req, p, now, store.ReportInput{
		Statuses: req.Statuses, Verdict: verdict, Reasons: reasons, BaseDigest: base, StateDigest: state,
	})
}

// submit stores a full or differential report through the group commit
// and answers it; in carries the statuses and the verdict, the rest is
// taken from req.
func (s *AgentService) submit(ctx context.Context, dev deviceIdentity, req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time, in store.ReportInput) (*mamoriv1.ReportResponse, error) {
	in.DeviceID, in.CertSerial, in.ReceivedAt = dev.ID, dev.Serial, now
	in.Facts, in.Events, in.PolicyVersion = req.Facts, req.Events, req.PolicyVersion
	in.PolicyDigest = p.Digest
	res, err := s.ingest.Submit(ctx, in)
	if err != nil {
		// Whatever this server knew of the device may be out of date (a
		// commit whose answer was cut off still lands).
		s.states.forget(dev.ID)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A certificate of ours for a device the store does not know.
		return nil, status.Error(codes.Unauthenticated, "unknown device: enrol again")
	case errors.Is(err, store.ErrDeviceRevoked), errors.Is(err, store.ErrCertSuperseded), errors.Is(err, store.ErrWrongDevice):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("store report of %s: %w", dev.ID, err)
	}
	if s.heartbeats != nil {
		s.heartbeats.Drop(dev.ID) // last_seen is written; a pending touch names the old state
	}
	switch {
	case res.NeedFull:
		s.states.forget(dev.ID)
	case in.KeepVerdict || in.StateDigest == "":
		// The stored verdict was not evaluated now, or the agent keeps no
		// digest: this server does not know the state for the fast path.
		s.states.forget(dev.ID)
	default:
		s.states.set(dev.ID, knownState{digest: in.StateDigest, verdictPolicy: p.Digest, serial: dev.Serial})
	}
	s.metrics.reports.Add(1)
	s.metrics.events.Add(int64(res.NewEvents))
	if err := s.consumeMFACodes(ctx, dev.ID, req.Events); err != nil {
		return nil, err
	}
	if err := s.recordMFALogins(ctx, dev.ID, p, req.Events, now); err != nil {
		// Like a code's consumption: the report fails and is sent again
		// (its events are stored once; the state is set, not added to).
		return nil, err
	}
	resp := s.answer(req, p, now)
	resp.NeedFull = res.NeedFull
	if res.NeedFull {
		s.metrics.needFull.Add(1)
		s.log.InfoContext(ctx, "differential report against a state this server does not hold: full report asked for",
			"device", dev.ID, "base_digest", in.BaseDigest)
	}
	if resp.MfaBundle, err = s.mfaBundle(ctx, dev, req, p, now); err != nil {
		// The report is stored; the bundle comes with a later one.
		s.log.ErrorContext(ctx, "mfa bundle not sent", "device", dev.ID, "error", err)
	}
	if len(res.Changes) > 0 {
		s.log.InfoContext(ctx, "control state changed", "device", dev.ID, "controls", res.Changes, "verdict", in.Verdict)
	}
	return resp, nil
}

// answer is the part of a report's answer every kind of report gets.
func (s *AgentService) answer(req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time) *mamoriv1.ReportResponse {
	resp := &mamoriv1.ReportResponse{
		AckedEventIds:  make([]string, len(req.Events)),
		NextReportIn:   durationpb.New(policy.ReportInterval(p)),
		ServerTime:     timestamppb.New(now),
		DeltasAccepted: true,
	}
	// Every event in the request is stored now: new ones by this commit,
	// duplicates by an earlier one.
	for i, e := range req.Events {
		resp.AckedEventIds[i] = e.Id
	}
	// Agents that send a digest get the policy when it differs (a group
	// or exception change keeps the version); older agents by version.
	if (req.PolicyDigest != "" && req.PolicyDigest != p.Digest) || (req.PolicyDigest == "" && req.PolicyVersion != p.Version) {
		resp.Policy = p
	}
	return resp
}

// Renew issues a device a new certificate for the key of the certificate
// the call came with. The key stays (a TPM key stays in the TPM and keeps
// its attestation); a new key needs a new enrolment. The store refuses a
// revoked device and a certificate that is neither the current one nor
// the one last renewed from; an expired certificate never gets here (the
// TLS handshake and authDevice refuse it).
func (s *AgentService) Renew(ctx context.Context, req *mamoriv1.RenewRequest) (*mamoriv1.RenewResponse, error) {
	dev, ok := deviceFrom(ctx)
	if !ok || dev.Cert == nil {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	// A device renews once in 16 months; one renewing in a loop would
	// fill the audit log. The budget is the device's own, keyed by its
	// verified certificate: no enrolment call can spend it.
	if ok, wait := s.admission.renew.take(dev.ID, s.admission.now()); !ok {
		return nil, s.refuseEnroll(ctx, "per_device_renew", wait, "this device renewed too often just now: retry after the delay given")
	}
	if len(req.GetCsr()) == 0 || len(req.GetCsr()) > MaxCSRBytes {
		return nil, invalidArg("csr is missing or larger than %d bytes", MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return nil, invalidArg("csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalidArg("csr signature: %v", err)
	}
	if pub, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(dev.Cert.PublicKey) {
		return nil, invalidArg("renewal keeps the key: the CSR must be for the key of the presented certificate (a new key needs a new enrolment)")
	}
	now := s.now()
	var (
		notAfter time.Time
		res      store.RenewResult
	)
	// The record commits with the new certificate; its serial and expiry
	// are added when it is signed, inside the transaction.
	err = s.audited(ctx, "device:"+dev.ID, "device.renew", dev.ID, "from_serial="+dev.Serial, func(actx context.Context) error {
		var err error
		res, err = s.store.Renew(actx, store.RenewParams{
			DeviceID: dev.ID, PresentedSerial: dev.Serial, Now: now,
			Sign: func() ([]byte, string, error) {
				der, serial, err := s.ca.SignDeviceCSR(req.Csr, dev.ID, dev.KeyAttested, now)
				if err != nil {
					return nil, "", invalidArg("%v", err)
				}
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, "", fmt.Errorf("parse the certificate just signed: %w", err)
				}
				notAfter = c.NotAfter
				store.AuditField(actx, "serial", serial)
				store.AuditField(actx, "not_after", notAfter.UTC().Format(time.RFC3339))
				return der, serial, nil
			},
		})
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Error(codes.Unauthenticated, "unknown device: enrol again")
	case err != nil:
		s.log.InfoContext(ctx, "renewal refused", "device", dev.ID, "serial", dev.Serial, "error", err)
		return nil, err
	}
	s.log.InfoContext(ctx, "device certificate renewed", "device", dev.ID, "from_serial", dev.Serial,
		"serial", res.Device.CertSerial, "not_after", notAfter)
	return &mamoriv1.RenewResponse{Certificate: res.CertDER, NotAfter: timestamppb.New(notAfter)}, nil
}
