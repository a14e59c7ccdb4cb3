// Package pki holds mamori's internal certificate authority and the TLS
// configurations of the server, the agent and mamorictl.
//
// Trust is simple on purpose: one CA per server installation (ECDSA P-256),
// created on first start. It signs the server's TLS certificate and every
// device certificate. A device certificate names its device in a URI SAN
// (mamori://device/<id>); the server learns which device speaks only from
// that SAN of a verified certificate.
//
// First contact is pinned: the installer carries the SHA-256 fingerprint of
// the CA certificate, and the agent refuses a server whose chain does not end
// at a CA with that fingerprint.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/atomicfile"
)

const (
	// DeviceURIScheme and DeviceURIHost form the URI SAN of a device
	// certificate: mamori://device/<device-id>.
	DeviceURIScheme = "mamori"
	DeviceURIHost   = "device"

	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"

	caValidity     = 20 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
	// DeviceValidity is how long a device certificate lasts. The agent
	// renews it (AgentService.Renew, same key) after 2/3 of it;
	// re-enrolment issues a new one too.
	DeviceValidity = 2 * 365 * 24 * time.Hour
)

// ErrFingerprintMismatch means the server's CA is not the one pinned.
var ErrFingerprintMismatch = errors.New("server CA fingerprint does not match the pinned fingerprint")

// CA is the server's certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// Fingerprint returns the lower-case hex SHA-256 of the CA certificate (DER).
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert.Raw) }

// Fingerprint returns the lower-case hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a fingerprint as people copy it (upper case,
// colons, a "sha256:" or "SHA256=" prefix) and returns the canonical form.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	for _, p := range []string{"sha256:", "sha256=", "sha256 fingerprint="} {
		s = strings.TrimPrefix(s, p)
	}
	s = strings.NewReplacer(":", "", " ", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("CA fingerprint must be 64 hex digits (SHA-256), got %q", s)
	}
	return s, nil
}

// LoadOrCreateCA loads the CA from dir, creating it when dir holds none.
// created reports whether a new CA was made. The key file is 0600.
func LoadOrCreateCA(dir string, now time.Time) (ca *CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		ca, err := LoadCA(dir)
		return ca, false, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("stat CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "mamori CA", Organization: []string{"mamori"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, fmt.Errorf("create CA certificate: %w", err)
	}
	if err := WriteKey(keyPath, key); err != nil {
		return nil, false, err
	}
	if err := writeFileSync(certPath, EncodeCert(der), 0o644); err != nil {
		return nil, false, err
	}
	ca, err = LoadCA(dir)
	return ca, true, err
}

// LoadCA reads an existing CA from dir.
func LoadCA(dir string) (*CA, error) {
	cert, err := ReadCert(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err
	}
	key, err := ReadKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA key in %s does not match %s", caKeyFile, caCertFile)
	}
	return &CA{Cert: cert, key: key}, nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// SignDeviceCSR checks a PKCS#10 request and issues a client certificate that
// binds deviceID. Only the public key of the CSR is used; its subject is
// ignored, so an agent cannot choose its own identity. attested marks a key
// the server proved to be inside the device's TPM (attested enrolment):
// the certificate then carries the KeyAttestedURI SAN, so every later call
// shows it without a database read, and no agent can claim it.
func (ca *CA) SignDeviceCSR(csrDER []byte, deviceID string, attested bool, now time.Time) (der []byte, serial string, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, "", fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("CSR signature: %w", err)
	}
	if err := checkDeviceKey(csr.PublicKey); err != nil {
		return nil, "", err
	}
	sn := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: deviceID, Organization: []string{"mamori device"}},
		URIs:         deviceURIs(deviceID, attested),
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(DeviceValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", fmt.Errorf("sign device certificate: %w", err)
	}
	return der, sn.Text(16), nil
}

func checkDeviceKey(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return errors.New("device key must be ECDSA P-256")
	}
	return nil
}

// KeyAttestedURI is the URI SAN of a device certificate whose key was
// attested to live in the device's TPM.
const KeyAttestedURI = "mamori://key/tpm-attested"

func deviceURIs(deviceID string, attested bool) []*url.URL {
	us := []*url.URL{DeviceURI(deviceID)}
	if attested {
		u, _ := url.Parse(KeyAttestedURI)
		us = append(us, u)
	}
	return us
}

// KeyAttested reports whether a (verified) device certificate says its key
// was attested in a TPM at enrolment.
func KeyAttested(cert *x509.Certificate) bool {
	for _, u := range cert.URIs {
		if u.String() == KeyAttestedURI {
			return true
		}
	}
	return false
}

// DeviceURI is the URI SAN that names a device.
func DeviceURI(deviceID string) *url.URL {
	return &url.URL{Scheme: DeviceURIScheme, Host: DeviceURIHost, Path: "/" + deviceID}
}

// DeviceIDFromCert returns the device ID bound into a device certificate.
func DeviceIDFromCert(cert *x509.Certificate) (string, error) {
	var id string
	for _, u := range cert.URIs {
		if u.Scheme == DeviceURIScheme && u.Host == DeviceURIHost {
			if id != "" {
				return "", errors.New("certificate names more than one device")
			}
			id = strings.TrimPrefix(u.Path, "/")
		}
	}
	if id == "" || strings.Contains(id, "/") {
		return "", errors.New("certificate names no device")
	}
	return id, nil
}

// SerialHex is the certificate serial as the store keeps it.
func SerialHex(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// ServerCertificate loads the server's TLS certificate from dir, issuing a
// new one from the CA when there is none, when it expires within 30 days, or
// when it does not cover every name in hosts. The chain it returns includes
// the CA certificate, so an agent that has only the CA's fingerprint can find
// and pin it on first contact.
func (ca *CA) ServerCertificate(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	c, err := ca.serverCertificate(dir, hosts, now)
	if err != nil {
		return c, err
	}
	c.Certificate = append(c.Certificate, ca.Cert.Raw)
	return c, nil
}

func (ca *CA) serverCertificate(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if c.Leaf != nil && c.Leaf.NotAfter.After(now.Add(30*24*time.Hour)) && covers(c.Leaf, hosts) &&
			c.Leaf.CheckSignatureFrom(ca.Cert) == nil {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "mamori-server", Organization: []string{"mamori"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign server certificate: %w", err)
	}
	if err := WriteKey(keyPath, key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileSync(certPath, EncodeCert(der), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h != "" && c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// ServerTLSConfig serves both agents (who present device certificates) and
// operators (who present none and authenticate with a token). A client
// certificate, when given, must chain to the CA; whether a call needs one is
// decided per RPC by the server's interceptor.
func ServerTLSConfig(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   []string{"h2"},
	}
}

// ClientTLSConfig trusts only the given CA. cert may be nil (enrolment,
// operators).
func ClientTLSConfig(ca *x509.CertPool, cert *tls.Certificate, serverName string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca, ServerName: serverName}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// PinnedTLSConfig is for first contact: the client does not yet have the CA
// certificate, only its fingerprint. The server's chain must end at a CA
// whose SHA-256 is fingerprint and verify against it (name checks included).
// onCA receives the pinned CA certificate so the caller can keep it.
func PinnedTLSConfig(fingerprint, serverName string, onCA func(*x509.Certificate)) (*tls.Config, error) {
	fp, err := NormalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, against the pinned CA only
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates[1:] {
				if Fingerprint(c.Raw) == fp {
					ca = c
				}
			}
			if ca == nil {
				return ErrFingerprintMismatch
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			name := serverName
			if name == "" {
				name = cs.ServerName
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if onCA != nil {
				onCA(ca)
			}
			return nil
		},
	}, nil
}

// NewDeviceKey makes a software device key (ECDSA P-256).
func NewDeviceKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewCSR makes a certificate request for key. The subject is informative
// only; the server decides the identity.
func NewCSR(key crypto.Signer, hostname string) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname},
	}, key)
}

// EncodeCert returns DER as PEM.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ReadCert reads one PEM certificate.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// WriteKey writes a private key as PKCS#8 PEM, mode 0600, durably.
func WriteKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	return writeFileSync(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// ReadKey reads a PKCS#8 PEM private key. It refuses a key file that others
// can read.
func ReadKey(path string) (crypto.Signer, error) {
	if err := atomicfile.CheckPrivate(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

// ReenrollDigest is what a re-enrolling agent signs with the key of its
// current device certificate (EnrollRequest.key_proof): SHA-256 over a
// fixed label and SHA-256 of the new CSR, so the proof is bound to the new
// key and cannot be moved to another request's key.
func ReenrollDigest(csrDER []byte) []byte {
	c := sha256.Sum256(csrDER)
	h := sha256.New()
	h.Write([]byte("mamori re-enrolment proof v1\x00"))
	h.Write(c[:])
	return h.Sum(nil)
}

// SignMessage signs msg (SHA-256) with the CA's key: the audit log's
// checkpoints (server/audit), which a verifier checks with the CA
// certificate it already pins. msg must carry a domain prefix of its
// own that no DER certificate starts with.
func (ca *CA) SignMessage(msg []byte) ([]byte, error) {
	sum := sha256.Sum256(msg)
	return ca.key.Sign(rand.Reader, sum[:], crypto.SHA256)
}
