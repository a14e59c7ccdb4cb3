// Package state is the agent's state directory:
//
//	key.tpm      device key inside the TPM (when the terminal has one): the
//	             public area and the private area encrypted by that TPM's
//	             storage root key, mode 0600. Useless on any other machine:
//	             a copied state directory yields no working identity.
//	key.pem      device key, PKCS#8, mode 0600, when there is no usable
//	             TPM (the key_storage fact then says "file"). Callers only
//	             ever see a crypto.Signer either way.
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
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/tpm"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// File names inside the state directory.
const (
	KeyFile    = "key.pem"
	TPMKeyFile = "key.tpm"
	CertFile   = "cert.pem"
	CAFile     = "ca.pem"
	DeviceFile = "device.json"
	PolicyFile = "policy.pb"
	// WitnessFile holds the newest signed audit checkpoint the server
	// gave this terminal (agent/daemon: witnesses).
	WitnessFile = "audit-witness.pb"
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

// Key storage values (the key_storage fact).
const (
	StorageFile = "file"
	StorageTPM  = "tpm"
)

// Options tune OpenWith.
type Options struct {
	// OpenTPM opens the TPM that holds the device key. Nil means the
	// platform's TPM (internal/tpm.Open); NoTPM keeps the key in a file.
	OpenTPM func() (transport.TPMCloser, error)
}

// NoTPM is an OpenTPM that reports no TPM.
func NoTPM() (transport.TPMCloser, error) { return nil, tpm.ErrNoTPM }

// Dir is a state directory.
type Dir struct {
	path    string
	openTPM func() (transport.TPMCloser, error)

	mu     sync.Mutex
	tpmed  bool // openTPM was called
	tp     transport.TPMCloser
	tpmErr error
	key    *tpm.Key // the loaded TPM key of the saved identity
}

// Open returns the state directory at path, creating it (0700) if needed.
// The device key goes into the platform's TPM when there is one.
func Open(path string) (*Dir, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options.
func OpenWith(path string, o Options) (*Dir, error) {
	if path == "" {
		return nil, errors.New("state directory is not set")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w (run as root/Administrator)", path, err)
	}
	if o.OpenTPM == nil {
		o.OpenTPM = tpm.Open
	}
	return &Dir{path: path, openTPM: o.OpenTPM}, nil
}

// TPM returns the TPM for the device key, opening it on first use; an error
// wrapping tpm.ErrNoTPM when there is none.
func (d *Dir) TPM() (transport.TPM, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tpmLocked()
}

func (d *Dir) tpmLocked() (transport.TPM, error) {
	if !d.tpmed {
		d.tpmed = true
		d.tp, d.tpmErr = d.openTPM()
	}
	return d.tp, d.tpmErr
}

// Close releases the TPM.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key != nil {
		d.key.Close()
		d.key = nil
	}
	if d.tp != nil {
		err := d.tp.Close()
		d.tp = nil
		return err
	}
	return nil
}

// Path returns the directory.
func (d *Dir) Path() string { return d.path }

func (d *Dir) file(name string) string { return filepath.Join(d.path, name) }

// NewKey makes a new device key: inside the TPM when there is one, else in
// memory (stored as key.pem). It is not stored until SaveIdentity, so a
// failed re-enrolment leaves the working identity in place. A TPM that is
// present but cannot make the key is an error, not a silent fallback: the
// caller decides (see NewFileKey).
func (d *Dir) NewKey() (crypto.Signer, error) {
	t, err := d.TPM()
	if errors.Is(err, tpm.ErrNoTPM) {
		return pki.NewDeviceKey()
	}
	if err != nil {
		return nil, err
	}
	return tpm.CreateKey(t)
}

// NewFileKey makes a software key, for when the TPM cannot be used.
func (d *Dir) NewFileKey() (crypto.Signer, error) { return pki.NewDeviceKey() }

// KeyStorageOf is the key_storage fact for key.
func KeyStorageOf(key crypto.Signer) string {
	if _, ok := key.(*tpm.Key); ok {
		return StorageTPM
	}
	return StorageFile
}

// KeyStorage is the key_storage fact: where the saved identity's key lives,
// or, before enrolment, where NewKey will put it.
func (d *Dir) KeyStorage() string {
	if _, err := os.Stat(d.file(TPMKeyFile)); err == nil {
		return StorageTPM
	}
	if _, err := os.Stat(d.file(KeyFile)); err == nil {
		return StorageFile
	}
	if _, err := d.TPM(); err == nil {
		return StorageTPM
	}
	return StorageFile
}

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
	tk, inTPM := id.Key.(*tpm.Key)
	if inTPM {
		b, err := tk.Blob().Encode()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(d.file(TPMKeyFile), b, 0o600); err != nil {
			return fmt.Errorf("save device key blob: %w", err)
		}
	} else if err := pki.WriteKey(d.file(KeyFile), id.Key); err != nil {
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
	// The identity is complete: the other kind of key is stale.
	stale := TPMKeyFile
	if inTPM {
		stale = KeyFile
	}
	if err := os.Remove(d.file(stale)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the previous device key: %w", err)
	}
	d.mu.Lock()
	if d.key != nil && d.key != tk {
		d.key.Close()
	}
	d.key = tk
	d.mu.Unlock()
	return nil
}

// LoadIdentity reads the identity. It returns an error wrapping
// ErrNotEnrolled when files are missing or do not belong together, and
// refuses a key file that others can read.
func (d *Dir) LoadIdentity() (*Identity, error) {
	for _, f := range []string{CertFile, CAFile, DeviceFile} {
		if _, err := os.Stat(d.file(f)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (%s missing in %s)", ErrNotEnrolled, f, d.path)
		}
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
	key, err := d.loadKey(cert)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%w (%s is not signed by %s: %v)", ErrNotEnrolled, CertFile, CAFile, err)
	}
	if id, err := pki.DeviceIDFromCert(cert); err != nil || id != dev.DeviceID {
		return nil, fmt.Errorf("%w (%s is not the certificate of device %s)", ErrNotEnrolled, CertFile, dev.DeviceID)
	}
	return &Identity{Device: dev, Key: key, Cert: cert, CA: ca}, nil
}

// loadKey returns the key that cert is for: key.tpm (loaded into this
// machine's TPM) or key.pem.
func (d *Dir) loadKey(cert *x509.Certificate) (crypto.Signer, error) {
	var errs []error
	if b, err := readBounded(d.file(TPMKeyFile)); err == nil {
		k, err := d.loadTPMKey(b)
		if err == nil && publicKeysEqual(cert.PublicKey, k.Public()) {
			return k, nil
		}
		if err == nil {
			err = fmt.Errorf("%s does not match %s: an enrolment was interrupted", CertFile, TPMKeyFile)
		}
		errs = append(errs, err)
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if _, err := os.Stat(d.file(KeyFile)); err == nil {
		key, err := pki.ReadKey(d.file(KeyFile))
		if err != nil {
			return nil, fmt.Errorf("device key: %w", err)
		}
		if publicKeysEqual(cert.PublicKey, key.Public()) {
			return key, nil
		}
		errs = append(errs, fmt.Errorf("%s does not match %s: an enrolment was interrupted", CertFile, KeyFile))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w (no device key (%s or %s) in %s)", ErrNotEnrolled, KeyFile, TPMKeyFile, d.path)
	}
	return nil, fmt.Errorf("%w (%w)", ErrNotEnrolled, errors.Join(errs...))
}

// loadTPMKey loads a key blob into the TPM, reusing the loaded key when it
// is the same blob (the TPM has few slots).
func (d *Dir) loadTPMKey(b []byte) (*tpm.Key, error) {
	blob, err := tpm.DecodeBlob(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TPMKeyFile, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key != nil {
		if cur := d.key.Blob(); string(cur.Public) == string(blob.Public) && string(cur.Private) == string(blob.Private) {
			return d.key, nil
		}
	}
	t, err := d.tpmLocked()
	if err != nil {
		return nil, fmt.Errorf("%s needs this terminal's TPM: %w", TPMKeyFile, err)
	}
	k, err := tpm.LoadKey(t, blob)
	if err != nil {
		return nil, err
	}
	if d.key != nil {
		d.key.Close()
	}
	d.key = k
	return k, nil
}

// SavePolicy stores p atomically and durably. Callers save a new policy
// before they apply it.
func (d *Dir) SavePolicy(p *mamoriv1.Policy) error { return d.saveProto(PolicyFile, "policy", p) }

// saveProto writes m to the file name atomically and durably.
func (d *Dir) saveProto(name, what string, m proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if err := atomicfile.Write(d.file(name), b, 0o600); err != nil {
		return fmt.Errorf("save %s: %w", what, err)
	}
	return nil
}

// loadProto reads the file name into m; fs.ErrNotExist when it is absent.
func (d *Dir) loadProto(name string, m proto.Message) error {
	b, err := readBounded(d.file(name))
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%s is damaged: %w", name, err)
	}
	return nil
}

// LoadPolicy reads the cached policy; ErrNoPolicy when there is none.
func (d *Dir) LoadPolicy() (*mamoriv1.Policy, error) {
	p := &mamoriv1.Policy{}
	err := d.loadProto(PolicyFile, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoPolicy
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// SaveWitness stores the audit checkpoint this terminal witnesses,
// atomically and durably.
func (d *Dir) SaveWitness(cp *mamoriv1.AuditCheckpoint) error {
	return d.saveProto(WitnessFile, "audit checkpoint", cp)
}

// LoadWitness reads the audit checkpoint this terminal witnesses; nil and
// no error when it has none yet. Its signature is the caller's to check.
func (d *Dir) LoadWitness() (*mamoriv1.AuditCheckpoint, error) {
	cp := &mamoriv1.AuditCheckpoint{}
	err := d.loadProto(WitnessFile, cp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return cp, nil
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

// SaveCertificate replaces the device certificate of id with cert, a
// renewal for the same key and device, and returns the new identity. Only
// cert.pem changes, in one atomic, durable rename: a crash leaves either
// the old certificate or the new one, and both belong to the key.
func (d *Dir) SaveCertificate(id *Identity, cert *x509.Certificate) (*Identity, error) {
	if id == nil || id.Key == nil || cert == nil {
		return nil, errors.New("save certificate: incomplete identity")
	}
	if !publicKeysEqual(cert.PublicKey, id.Key.Public()) {
		return nil, errors.New("save certificate: certificate is not for this device's key")
	}
	if devID, err := pki.DeviceIDFromCert(cert); err != nil || devID != id.Device.DeviceID {
		return nil, fmt.Errorf("save certificate: certificate names device %q, this is %s", devID, id.Device.DeviceID)
	}
	if err := cert.CheckSignatureFrom(id.CA); err != nil {
		return nil, fmt.Errorf("save certificate: not signed by the pinned CA: %w", err)
	}
	if err := atomicfile.Write(d.file(CertFile), pki.EncodeCert(cert.Raw), 0o644); err != nil {
		return nil, fmt.Errorf("save device certificate: %w", err)
	}
	next := *id
	next.Cert = cert
	return &next, nil
}
