package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// BenchmarkHandshake: a full TLS 1.3 mutual handshake on loopback where
// the client's key is a software ECDSA key, a key in the in-process
// simulator, or a key in swtpm (another process over TCP, like a real TPM
// behind a driver). Reports p50 and p99 per handshake.
//
//	go test -run '^$' -bench Handshake -benchtime 500x ./internal/tpm
func BenchmarkHandshake(b *testing.B) {
	b.Run("software", func(b *testing.B) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		benchHandshake(b, k)
	})
	b.Run("tpm-simulator", func(b *testing.B) {
		benchHandshake(b, tpmKey(b, tpmtest.Open(b, 1)))
	})
	b.Run("tpm-swtpm", func(b *testing.B) {
		benchHandshake(b, tpmKey(b, tpmtest.Swtpm(b)))
	})
}

func tpmKey(b *testing.B, t transport.TPM) crypto.Signer {
	k, err := tpm.CreateKey(t)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func benchHandshake(b *testing.B, clientKey crypto.Signer) {
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serverCert := issue(b, serverKey, serverKey.Public(), "server", nil)
	clientCert := issue(b, serverKey, clientKey.Public(), "client", serverCert)
	pool := x509.NewCertPool()
	pool.AddCert(serverCert)
	srvCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	cliCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ServerName:   "server",
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientCert.Raw}, PrivateKey: clientKey}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, srvCfg)
				tc.Handshake()
				tc.Close()
			}()
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		c, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
		if err != nil {
			b.Fatal(err)
		}
		// The client's CertificateVerify is checked when the server reads
		// its Finished: read until the server closes.
		c.Read(make([]byte, 1))
		lat = append(lat, time.Since(start))
		c.Close()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// issue makes a certificate for pub signed by signer: self-signed (a CA)
// when parent is nil.
func issue(b *testing.B, signer crypto.Signer, pub crypto.PublicKey, cn string, parent *x509.Certificate) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: parent == nil, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		b.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
