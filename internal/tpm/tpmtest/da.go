package tpmtest

import (
	"io"
	"testing"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SetDictionaryAttack sets the TPM's dictionary-attack parameters with
// TPM2_DictionaryAttackParameters (lockout hierarchy, empty lockoutAuth as
// on a fresh simulator or swtpm) and resets the failure counter, so a test
// can reach the lockout in a few tries. recoveryTime must be > 0: zero
// switches DA protection off.
//
// The new go-tpm tpm2 package has no DA commands; the legacy one does.
// (go-tpm's transport.ToReadWriter answers the last read with io.EOF,
// which the legacy package treats as a failure; readWriter does not.)
func SetDictionaryAttack(t testing.TB, tp transport.TPM, maxTries, recoveryTime, lockoutRecovery uint32) {
	t.Helper()
	rw := &readWriter{tpm: tp}
	auth := legacy.AuthCommand{Session: legacy.HandlePasswordSession, Attributes: legacy.AttrContinueSession}
	if err := legacy.DictionaryAttackLockReset(rw, auth); err != nil {
		t.Fatalf("TPM2_DictionaryAttackLockReset: %v", err)
	}
	if err := legacy.DictionaryAttackParameters(rw, auth, maxTries, recoveryTime, lockoutRecovery); err != nil {
		t.Fatalf("TPM2_DictionaryAttackParameters: %v", err)
	}
}

type readWriter struct {
	tpm  transport.TPM
	resp []byte
}

func (r *readWriter) Write(p []byte) (int, error) {
	rsp, err := r.tpm.Send(p)
	if err != nil {
		return 0, err
	}
	r.resp = rsp
	return len(p), nil
}

func (r *readWriter) Read(p []byte) (int, error) {
	if len(r.resp) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.resp)
	r.resp = r.resp[n:]
	return n, nil
}
