package ctl

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// decodeHalfBlocks reads halfBlocks' output back into modules.
func decodeHalfBlocks(t *testing.T, s string, rows int) [][]bool {
	t.Helper()
	var bits [][]bool
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		top, bottom := []bool{}, []bool{}
		for _, r := range line {
			switch r {
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			case '▄':
				top, bottom = append(top, true), append(bottom, false)
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			default:
				t.Fatalf("unexpected rune %q in the QR drawing", r)
			}
		}
		bits = append(bits, top, bottom)
	}
	return bits[:rows]
}

// TestTerminalQR: the half-block drawing holds every module of the QR
// code (read back, it is the encoder's bitmap), light modules drawn as
// blocks, two rows a line, with the quiet zone.
func TestTerminalQR(t *testing.T) {
	for _, uri := range []string{
		"otpauth://totp/mamori:tanaka?algorithm=SHA1&digits=6&issuer=mamori&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
		"otpauth://totp/mamori:a?secret=GEZDGNBV", // an odd number of rows
	} {
		s, err := terminalQR(uri)
		if err != nil {
			t.Fatal(err)
		}
		q, err := qrcode.New(uri, qrcode.Medium)
		if err != nil {
			t.Fatal(err)
		}
		want := q.Bitmap()
		got := decodeHalfBlocks(t, s, len(want))
		if len(got) != len(want) {
			t.Fatalf("%d rows; want %d", len(got), len(want))
		}
		for y := range want {
			for x := range want[y] {
				if got[y][x] != want[y][x] {
					t.Fatalf("module (%d,%d) drawn %v; want %v", x, y, got[y][x], want[y][x])
				}
			}
		}
		if lines := strings.Count(s, "\n"); lines != (len(want)+1)/2 {
			t.Fatalf("%d lines for %d rows", lines, len(want))
		}
		if !strings.HasPrefix(s, strings.Repeat("█", len(want[0]))+"\n") {
			t.Fatal("no light quiet zone on top")
		}
	}
}

// TestTerminalQRScans: the drawing, as a dark terminal shows it (a block
// is light, a space dark), scans with zbar back to the otpauth URI — an
// independent decoder, not the encoder's own bitmap.
func TestTerminalQRScans(t *testing.T) {
	zbar := testenv.LookPath(t, "zbarimg", "zbar-tools")
	uri := "otpauth://totp/mamori:tanaka?algorithm=SHA1&digits=6&issuer=mamori&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	s, err := terminalQR(uri)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	bits := decodeHalfBlocks(t, s, 2*len(lines))
	const scale = 4
	img := image.NewGray(image.Rect(0, 0, len(bits[0])*scale, len(bits)*scale))
	for y := range bits {
		for x := range bits[y] {
			c := color.Gray{Y: 255}
			if bits[y][x] {
				c.Y = 0
			}
			for dy := range scale {
				for dx := range scale {
					img.SetGray(x*scale+dx, y*scale+dy, c)
				}
			}
		}
	}
	path := filepath.Join(t.TempDir(), "qr.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(zbar, "--raw", "-q", "--nodbus", path).CombinedOutput()
	if err != nil {
		t.Fatalf("zbarimg: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != uri {
		t.Fatalf("zbar read %q; want %q", got, uri)
	}
}
