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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// ArtifactsEnv names a directory for screenshots; by default they go to
// $TMPDIR/mamori-artifacts/<test name>, which is kept after the test (its
// path is logged), so a run's screenshots can be looked at afterwards.
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
		dir = filepath.Join(os.TempDir(), "mamori-artifacts")
	}
	dir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", dir)
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

// wordBreaksJS lists every word the page shows broken across lines, and
// every block whose box is narrower than the longest word in it. A word is
// a run of letters and digits; inside table headers, badges and host names
// (th, .badge, .host) it is any run without white space, hyphens and
// Japanese included. Text inside .wrap (long agent values), pre, code,
// textarea and svg may break anywhere and is left out. It measures the
// rendered text (Range boxes), not pixels of a screenshot.
const wordBreaksJS = `(() => {
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let n;
  while ((n = walker.nextNode())) {
    const el = n.parentElement;
    if (!el || el.closest('.wrap, pre, code, textarea, svg, option, script, style, title')) continue;
    if (el.getClientRects().length === 0) continue;
    const strict = el.closest('th, .badge, .host');
    const re = strict ? /\S+/g : /[\p{L}\p{N}_]+/gu;
    const latinOnly = !strict;
    let m;
    while ((m = re.exec(n.data))) {
      if (latinOnly && /[\u3000-\u9fff\uff00-\uffef]/.test(m[0])) continue; // Japanese prose breaks between characters
      const r = document.createRange();
      r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
      const rects = [...r.getClientRects()].filter(x => x.width > 0.5);
      const tops = new Set(rects.map(x => Math.round(x.top)));
      const where = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).split(' ').join('.') : '');
      if (tops.size > 1) { bad.push('broken: "' + m[0] + '" in ' + where); continue; }
      const box = (strict || el).getBoundingClientRect();
      const w = r.getBoundingClientRect().width;
      if (getComputedStyle(strict || el).display !== 'inline' && box.width + 1 < w) {
        bad.push('narrower than its word: "' + m[0] + '" (' + Math.round(w) + ' px) in ' + where + ' (' + Math.round(box.width) + ' px)');
      }
    }
  }
  return bad;
})()`

// WordBreaks returns, for the page shown, every word broken across lines
// and every element narrower than its longest word (see wordBreaksJS).
func (b *Browser) WordBreaks() []string {
	b.t.Helper()
	bad, err := chromedp.Run(b.Ctx, chromedp.Evaluate[[]string](wordBreaksJS))
	if err != nil {
		b.t.Fatalf("measure word breaks: %v", err)
	}
	return bad
}

// Box is an element's bounding box in CSS pixels, relative to the viewport.
type Box struct{ Left, Top, Right, Bottom float64 }

// BoxOf is the bounding box of the first element sel (CSS) matches and the
// viewport's size.
func (b *Browser) BoxOf(sel string) (box Box, vw, vh float64) {
	b.t.Helper()
	js := `(() => { const e = document.querySelector(` + strconv.Quote(sel) + `); if (!e) return null;
	  const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, window.innerWidth, window.innerHeight]; })()`
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[[]float64](js))
	if err != nil || len(v) != 6 {
		b.t.Fatalf("box of %s: %v %v", sel, v, err)
	}
	return Box{v[0], v[1], v[2], v[3]}, v[4], v[5]
}

// Viewport sizes the page (CSS pixels).
func (b *Browser) Viewport(w, h int64) {
	b.t.Helper()
	if err := chromedp.Do(b.Ctx, chromedp.EmulateViewport(w, h)); err != nil {
		b.t.Fatalf("viewport %dx%d: %v", w, h, err)
	}
}
