package packaging

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/credprov"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/winetest"
)

// throwawayCert writes a self-signed code-signing certificate and key.
func throwawayCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mamori test signing (throwaway)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	cert, key = filepath.Join(dir, "sign.pem"), filepath.Join(dir, "sign.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

func msiTable(t *testing.T, msi, table string) string {
	t.Helper()
	return out(t, nil, testenv.LookPath(t, "msiinfo", "msitools"), "export", msi, table)
}

// TestMSI builds the MSI with wixl from the real windows agent, inspects
// it with msiinfo, signs it with osslsigncode (a throwaway certificate;
// verify ok, a one-byte change caught), then installs the signed MSI under
// wine with SERVER/TOKEN/CA_FINGERPRINT and checks the files, the registry
// values, the running service (the agent reads SERVER from the registry
// and dials it), stops it through the SCM and uninstalls.
func TestMSI(t *testing.T) {
	testenv.Short(t)
	testenv.LookPath(t, "wixl", "wixl")
	testenv.LookPath(t, "msibuild", "msitools")
	testenv.LookPath(t, "osslsigncode", "osslsigncode")
	dir := t.TempDir()
	ctx := context.Background()

	// The agent compiles while the wine prefix initialises.
	type built struct {
		exe string
		err error
	}
	agentCh := make(chan built, 1)
	go func() {
		exe := filepath.Join(dir, "mamori-agent.exe")
		cmd := exec.Command("go", "build", "-o", exe, "../../agent/cmd/mamori-agent")
		cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
		b, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("build the windows agent: %v\n%s", err, b)
		}
		agentCh <- built{exe, err}
	}()
	env := winetest.New(t)
	a := <-agentCh
	if a.err != nil {
		t.Fatal(a.err)
	}
	agent := a.exe
	dll := filepath.Join(dir, credprov.DLLName)
	if err := credprov.Build(ctx, credprov.CC, credprov.DLLArgs("../../agent/credprov", dll)); err != nil {
		t.Fatal(err)
	}
	dllBytes, _ := os.ReadFile(dll)
	dllSum := sha256.Sum256(dllBytes)

	unsigned := filepath.Join(dir, "unsigned.msi")
	if err := BuildMSI(ctx, NewWXS(agent, dll, "v1.4.2"), dir, unsigned); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "Property table", msiTable(t, unsigned, "Property"),
		"UpgradeCode\t{"+UpgradeCode+"}", "ProductVersion\t1.4.2",
		"SecureCustomProperties\t"+SecureProperties, "MsiHiddenProperties\tTOKEN")
	mustContain(t, "ServiceInstall table", msiTable(t, unsigned, "ServiceInstall"), "mamori-agent\tmamori agent\t16\t2\t1\t\t\tLocalSystem\t\trun")
	mustContain(t, "Registry table", msiTable(t, unsigned, "Registry"), "SOFTWARE\\mamori\\\tToken\t[TOKEN]")
	mustContain(t, "Upgrade table", msiTable(t, unsigned, "Upgrade"), "{"+UpgradeCode+"}")
	// Uninstall unregisters the credential provider before the files go;
	// an upgrade does not (the new DLL takes the old one's place).
	mustContain(t, "InstallExecuteSequence table", msiTable(t, unsigned, "InstallExecuteSequence"),
		"RemoveExistingProducts\t\t1401", "CredProvRemove\tREMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE\t3400", "RemoveFiles\t\t3500")

	// Authenticode.
	cert, key := throwawayCert(t, dir)
	msi := filepath.Join(dir, "mamori-agent.msi")
	if err := Sign(ctx, cert, key, unsigned, msi); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, cert, msi); err != nil {
		t.Fatalf("signed MSI does not verify: %v", err)
	}
	if err := Verify(ctx, cert, unsigned); err == nil {
		t.Error("the unsigned MSI verifies")
	}
	b, _ := os.ReadFile(msi)
	b[len(b)/2] ^= 0x01
	tampered := filepath.Join(dir, "tampered.msi")
	os.WriteFile(tampered, b, 0o644)
	if err := Verify(ctx, cert, tampered); err == nil {
		t.Error("a one-byte change in the signed MSI still verifies")
	}

	// Install under wine. SERVER points at a listener here: the agent,
	// started by wine's service manager, reads it from the registry and
	// dials it to enrol.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			dialed <- struct{}{}
			c.Close()
		}
	}()
	fp := "sha256:" + strings.Repeat("ab", 32)
	wine := func(args ...string) (string, int) {
		t.Helper()
		return env.Run(t, time.Minute, nil, args[0], args[1:]...)
	}
	// INSTALLDIR (and the directory's own Id) given on the command line
	// are ignored: a private property cannot move the LocalSystem binary
	// and the DLL LogonUI loads into a folder users can write.
	if o, code := wine("msiexec", "/i", msi, "/qn", "SERVER="+ln.Addr().String(), "TOKEN=mme_wine", "CA_FINGERPRINT="+fp,
		`INSTALLDIR=C:\users\Public\evil`, `InstallDir=C:\users\Public\evil2`); code != 0 {
		t.Fatalf("msiexec /i exited %d:\n%s", code, o)
	}
	if _, err := os.Stat(env.Path(`C:\Program Files\mamori\mamori-agent.exe`)); err != nil {
		t.Errorf("agent not installed: %v", err)
	}
	for _, p := range []string{`C:\users\Public\evil`, `C:\users\Public\evil2`} {
		if _, err := os.Stat(env.Path(p)); err == nil {
			t.Errorf("the install directory was moved to %s from the command line", p)
		}
	}
	// The credential provider is installed, not registered, and its hash
	// recorded for the login-mfa control.
	if b, err := os.ReadFile(env.Path(`C:\Program Files\mamori\mamori-cp.dll`)); err != nil || sha256.Sum256(b) != dllSum {
		t.Errorf("mamori-cp.dll not installed as built: %v", err)
	}
	o, _ := wine("reg", "query", `HKLM\SOFTWARE\mamori`, "/v", CredProvSHA256Value)
	mustContain(t, "the DLL's recorded hash", o, hex.EncodeToString(dllSum[:]))
	if o, code := wine("reg", "query", `HKLM\`+loginmfa.ProviderKey); code == 0 {
		t.Errorf("the MSI registered the credential provider (the policy does that):\n%s", o)
	}
	o, _ = wine("reg", "query", `HKLM\SOFTWARE\mamori`)
	mustContain(t, `HKLM\SOFTWARE\mamori`, o, "Server    REG_SZ    "+ln.Addr().String(), "Token    REG_SZ    mme_wine", "CAFingerprint    REG_SZ    "+fp)
	o, _ = wine("reg", "query", `HKLM\SYSTEM\CurrentControlSet\Services\mamori-agent`)
	mustContain(t, "service registration", o, `mamori-agent.exe run`, "Start    REG_DWORD    0x2", "LocalSystem")
	o, _ = wine("sc", "query", "mamori-agent")
	mustContain(t, "sc query after install", o, "RUNNING")
	select {
	case <-dialed:
	case <-time.After(30 * time.Second):
		t.Error("the installed service never dialled SERVER: it did not read the registry, or did not run")
	}

	stop := func(when string) {
		t.Helper()
		wine("sc", "stop", "mamori-agent")
		deadline := time.Now().Add(20 * time.Second)
		for o, _ = wine("sc", "query", "mamori-agent"); !strings.Contains(o, "STOPPED") && time.Now().Before(deadline); o, _ = wine("sc", "query", "mamori-agent") {
			time.Sleep(300 * time.Millisecond)
		}
		mustContain(t, "sc query "+when, o, "STOPPED")
	}
	// What Windows Installer has registered for our UpgradeCode.
	installed := func() string {
		t.Helper()
		o, _ := wine("reg", "query", `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`, "/s")
		var vs []string
		for _, block := range strings.Split(o, "\nHKEY_") {
			if strings.Contains(block, "mamori agent") {
				for _, l := range strings.Split(block, "\n") {
					if f := strings.Fields(l); len(f) == 3 && f[0] == "DisplayVersion" {
						vs = append(vs, f[2])
					}
				}
			}
		}
		return strings.Join(vs, ",")
	}
	if v := installed(); v != "1.4.2" {
		t.Errorf("registered versions after install: %q; want 1.4.2", v)
	}

	// Upgrade in place with a newer MSI and no properties (the terminal is
	// set up): one product remains, the newer one, still registered as a
	// service; the state directory stays.
	stop("before the upgrade")
	newer := filepath.Join(dir, "mamori-agent-1.4.3.msi")
	if err := BuildMSI(ctx, NewWXS(agent, dll, "v1.4.3"), dir, newer); err != nil {
		t.Fatal(err)
	}
	if o, code := wine("msiexec", "/i", newer, "/qn"); code != 0 {
		t.Fatalf("msiexec /i (upgrade) exited %d:\n%s", code, o)
	}
	if v := installed(); v != "1.4.3" {
		t.Errorf("registered versions after the upgrade: %q; want only 1.4.3", v)
	}
	o, _ = wine("reg", "query", `HKLM\SYSTEM\CurrentControlSet\Services\mamori-agent`)
	mustContain(t, "service registration after the upgrade", o, `mamori-agent.exe run`, "Start    REG_DWORD    0x2")
	o, _ = wine("sc", "query", "mamori-agent")
	mustContain(t, "sc query after the upgrade (started again)", o, "RUNNING")
	if _, err := os.Stat(env.Path(`C:\ProgramData\mamori`)); err != nil {
		t.Errorf("state directory gone after the upgrade: %v", err)
	}
	// The older MSI does not go back over the newer one.
	if _, code := wine("msiexec", "/i", msi, "/qn"); code == 0 && installed() != "1.4.3" {
		t.Errorf("the older MSI replaced the newer one: %q", installed())
	}
	msi = newer

	// Stop through the SCM (msiexec /x under wine does not stop it), then
	// uninstall: program and settings go, the state directory stays.
	stop("after stop")
	// As if the policy had switched login-mfa on: uninstalling must take
	// the registration back before the DLL goes.
	for _, k := range []string{loginmfa.ProviderKey, loginmfa.FilterKey} {
		if o, code := wine("reg", "add", `HKLM\`+k, "/ve", "/d", "mamori", "/f"); code != 0 {
			t.Fatalf("reg add: %s", o)
		}
	}
	if o, code := wine("msiexec", "/x", msi, "/qn"); code != 0 {
		t.Fatalf("msiexec /x exited %d:\n%s", code, o)
	}
	for _, k := range []string{loginmfa.FilterKey, loginmfa.ProviderKey} {
		if o, code := wine("reg", "query", `HKLM\`+k); code == 0 {
			t.Errorf("%s left after uninstall (mamori-agent credprov-remove did not run):\n%s", k, o)
		}
	}
	if _, err := os.Stat(env.Path(`C:\Program Files\mamori\mamori-cp.dll`)); err == nil {
		t.Error("mamori-cp.dll still installed after msiexec /x")
	}
	if _, err := os.Stat(env.Path(`C:\Program Files\mamori\mamori-agent.exe`)); err == nil {
		t.Error("agent still installed after msiexec /x")
	}
	if o, code := wine("reg", "query", `HKLM\SOFTWARE\mamori`); code == 0 {
		t.Errorf("HKLM\\SOFTWARE\\mamori left after uninstall:\n%s", o)
	}
	if _, err := os.Stat(env.Path(`C:\ProgramData\mamori`)); err != nil {
		t.Errorf("state directory gone after uninstall (it must stay): %v", err)
	}
}
