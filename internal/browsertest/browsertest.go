// Package browsertest drives Debian's Chromium (headless, through
// chromedp) against the console in tests: the browser trusts exactly the
// console's key (an SPKI pin; the internal CA is not in its store), speaks
// Japanese like the terminals' desks, and keeps screenshots as artefacts.
package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// ArtifactsEnv names a directory for screenshots; by default they go to a
// temporary directory that is removed after the test.
const ArtifactsEnv = "MAMORI_TEST_ARTIFACTS"

// Browser is one headless Chromium with one tab.
type Browser struct {
	t   testing.TB
	Ctx context.Context
	// Dir is where Shot writes.
	Dir string
}

// Start opens Chromium for consoleURL, whose certificate must chain to
// roots. It skips (fails under CI=true) without Chromium. The browser is
// closed when the test ends; every action shares timeout.
func Start(t testing.TB, consoleURL string, roots *x509.CertPool, timeout time.Duration) *Browser {
	t.Helper()
	chromium := testenv.LookPath(t, "chromium", "chromium")
	u, err := url.Parse(consoleURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// A Japanese browser, as on the terminals' desks.
		chromedp.Flag("lang", "ja-JP"),
		chromedp.Flag("accept-lang", "ja-JP,ja"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })

	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Browser{t: t, Ctx: ctx, Dir: dir}
}

// Text is the text of the first element sel (CSS) matches.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Shot saves a full-page PNG screenshot as name in Dir.
func (b *Browser) Shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(b.Dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}
