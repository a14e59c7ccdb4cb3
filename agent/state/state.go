// Package state is the agent's state directory:
//
//	key.pem      device key, PKCS#8, mode 0600 (software ECDSA P-256 for
//	             now; a later change moves it into the TPM, which is why
//	             callers only ever see a crypto.Signer)
//	cert.pem     device certificate
//	ca.pem       server CA certificate (the only CA the agent trusts)
//	device.json  device ID, server list, enrolment time
//	policy.pb    the last policy, written before it is applied, so that a
//	             restart enforces it without the server
//
// Every file is written atomically and durably (internal/atomicfile).
package state

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// File names inside the state directory.
const (
	KeyFile    = "key.pem"
	CertFile   = "cert.pem"
	CAFile     = "ca.pem"
	DeviceFile = "device.json"
	PolicyFile = "policy.pb"
)

// maxSmallFile bounds device.json and policy.pb.
const maxSmallFile = 4 << 20

// ErrNotEnrolled means the directory holds no complete identity.
var ErrNotEnrolled = errors.New("this terminal is not enrolled: run mamori-agent enroll --server HOST:PORT --token TOKEN --ca-fingerprint SHA256")

// ErrNoPolicy means no policy has been cached yet.
var ErrNoPolicy = errors.New("no cached policy")

// Device is the device record (device.json).
type Device struct {
	DeviceID   string    `json:"device_id"`
	Servers    []string  `json:"servers"`
	EnrolledAt time.Time `json:"enrolled_at"`
	// CAFingerprint is the SHA-256 of ca.pem, for people reading the file.
	CAFingerprint string `json:"ca_fingerprint"`
}

// Identity is what the agent proves itself with.
type Identity struct {
	Device Device
	// Key signs for the device; it may live outside this process (TPM).
	Key  crypto.Signer
	Cert *x509.Certificate
	CA   *x509.Certificate
}

// TLSCertificate returns the client certificate for mutual TLS.
func (id *Identity) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key, Leaf: id.Cert}
}

// CAPool returns a pool holding only the pinned CA.
func (id *Identity) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(id.CA)
	return p
}

// Dir is a state directory.
type Dir struct {
	path string
}

// Open returns the state directory at path, creating it (0700) if needed.
func Open(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("state directory is not set")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w (run as root/Administrator)", path, err)
	}
	return &Dir{path: path}, nil
}

// Path returns the directory.
func (d *Dir) Path() string { return d.path }

func (d *Dir) file(name string) string { return filepath.Join(d.path, name) }

// NewKey makes a new device key. It is not stored until SaveIdentity, so a
// failed re-enrolment leaves the working identity in place.
func (d *Dir) NewKey() (crypto.Signer, error) {
	return pki.NewDeviceKey()
}

// KeyStorage is the key_storage fact for keys from this directory.
func (d *Dir) KeyStorage() string { return "file" }

// SaveIdentity stores a new identity: key, certificate, CA and device
// record. The certificate must be for the key.
func (d *Dir) SaveIdentity(id *Identity) error {
	if id == nil || id.Key == nil || id.Cert == nil || id.CA == nil || id.Device.DeviceID == "" {
		return errors.New("save identity: incomplete identity")
	}
	if !publicKeysEqual(id.Cert.PublicKey, id.Key.Public()) {
		return errors.New("save identity: certificate is not for this key")
	}
	id.Device.CAFingerprint = pki.Fingerprint(id.CA.Raw)
	dev, err := json.MarshalIndent(id.Device, "", "  ")
	if err != nil {
		return err
	}
	// Key first: a crash after it leaves a key without its certificate,
	// which LoadIdentity reports as "not enrolled", never a wrong pairing
	// that looks valid.
	if err := pki.WriteKey(d.file(KeyFile), id.Key); err != nil {
		return fmt.Errorf("save device key: %w", err)
	}
	if err := atomicfile.Write(d.file(CAFile), pki.EncodeCert(id.CA.Raw), 0o644); err != nil {
		return fmt.Errorf("save CA certificate: %w", err)
	}
	if err := atomicfile.Write(d.file(CertFile), pki.EncodeCert(id.Cert.Raw), 0o644); err != nil {
		return fmt.Errorf("save device certificate: %w", err)
	}
	if err := atomicfile.Write(d.file(DeviceFile), append(dev, '\n'), 0o644); err != nil {
		return fmt.Errorf("save device record: %w", err)
	}
	return nil
}

// LoadIdentity reads the identity. It returns an error wrapping
// ErrNotEnrolled when files are missing or do not belong together, and
// refuses a key file that others can read.
func (d *Dir) LoadIdentity() (*Identity, error) {
	for _, f := range []string{KeyFile, CertFile, CAFile, DeviceFile} {
		if _, err := os.Stat(d.file(f)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (%s missing in %s)", ErrNotEnrolled, f, d.path)
		}
	}
	key, err := pki.ReadKey(d.file(KeyFile))
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	cert, err := pki.ReadCert(d.file(CertFile))
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	ca, err := pki.ReadCert(d.file(CAFile))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	b, err := readBounded(d.file(DeviceFile))
	if err != nil {
		return nil, err
	}
	var dev Device
	if err := json.Unmarshal(b, &dev); err != nil {
		return nil, fmt.Errorf("%s: %w", DeviceFile, err)
	}
	if dev.DeviceID == "" {
		return nil, fmt.Errorf("%w (%s names no device)", ErrNotEnrolled, DeviceFile)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%w (%s does not match %s: an enrolment was interrupted)", ErrNotEnrolled, CertFile, KeyFile)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%w (%s is not signed by %s: %v)", ErrNotEnrolled, CertFile, CAFile, err)
	}
	if id, err := pki.DeviceIDFromCert(cert); err != nil || id != dev.DeviceID {
		return nil, fmt.Errorf("%w (%s is not the certificate of device %s)", ErrNotEnrolled, CertFile, dev.DeviceID)
	}
	return &Identity{Device: dev, Key: key, Cert: cert, CA: ca}, nil
}

// SavePolicy stores p atomically and durably. Callers save a new policy
// before they apply it.
func (d *Dir) SavePolicy(p *mamoriv1.Policy) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode policy: %w", err)
	}
	if err := atomicfile.Write(d.file(PolicyFile), b, 0o600); err != nil {
		return fmt.Errorf("save policy: %w", err)
	}
	return nil
}

// LoadPolicy reads the cached policy; ErrNoPolicy when there is none.
func (d *Dir) LoadPolicy() (*mamoriv1.Policy, error) {
	b, err := readBounded(d.file(PolicyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoPolicy
	}
	if err != nil {
		return nil, err
	}
	p := &mamoriv1.Policy{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", PolicyFile, err)
	}
	return p, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmallFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSmallFile)
	}
	return b, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
