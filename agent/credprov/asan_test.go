package credprov

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// The DLL's byte handling (src/cpcore.c) built for Linux with
// AddressSanitizer and UndefinedBehaviorSanitizer (src/asan/harness.c),
// driven by the hostile inputs below and by FuzzCore. A finding aborts
// the harness, and the test fails with the sanitizer's report.

type harness struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *bytes.Buffer
}

var (
	harnessOnce sync.Once
	theHarness  *harness
	harnessErr  string
)

// sanitized returns the running harness, built once per test process.
func sanitized(t testing.TB) *harness {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the sanitizer build runs on Linux")
	}
	gcc := testenv.LookPath(t, "gcc", "gcc")
	harnessOnce.Do(func() {
		bin, err := buildHarness(gcc)
		if err != nil {
			harnessErr = err.Error()
			return
		}
		h := &harness{cmd: exec.Command(bin), stderr: &bytes.Buffer{}}
		h.cmd.Env = append(os.Environ(), "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS=print_stacktrace=1")
		h.cmd.Stderr = h.stderr
		if h.in, err = h.cmd.StdinPipe(); err == nil {
			var o io.ReadCloser
			if o, err = h.cmd.StdoutPipe(); err == nil {
				h.out = bufio.NewReader(o)
				err = h.cmd.Start()
			}
		}
		if err != nil {
			harnessErr = err.Error()
			return
		}
		theHarness = h
	})
	if theHarness == nil {
		if strings.Contains(harnessErr, "asan") || strings.Contains(harnessErr, "sanitize") {
			testenv.Unavailable(t, "gcc cannot build with -fsanitize=address,undefined: "+harnessErr)
		}
		t.Fatal(harnessErr)
	}
	return theHarness
}

// buildHarness builds the sanitizer harness once per source version into
// a directory named by the hash of its sources and flags, shared by the
// processes of one go test run: a fuzz run's workers are processes of
// their own, and each building it (seconds under load) inside its first
// input ran into the fuzzer's 10 s hang limit once. The fuzz targets
// build it before f.Fuzz, in the coordinator.
func buildHarness(gcc string) (string, error) {
	args := []string{"-std=c99", "-g", "-O1", "-Wall", "-Wextra", "-Werror",
		"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"}
	srcs := []string{"src/asan/harness.c", "src/cpcore.c", "src/argon2id.c"}
	sum := sha256.New()
	fmt.Fprintln(sum, gcc, args)
	hdrs, _ := filepath.Glob("src/*.h")
	for _, f := range append(append([]string{}, srcs...), hdrs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(sum, "%s %d\n", f, len(b))
		sum.Write(b)
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mamori-cp-asan-%x", sum.Sum(nil)[:8]))
	bin := filepath.Join(dir, "harness")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp("", "mamori-cp-asan-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	out, err := exec.Command(gcc, append(append(args, "-o", filepath.Join(tmp, "harness")), srcs...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build the sanitizer harness: %v\n%s", err, out)
	}
	// Another process may have won the race: either copy is the same.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr != nil {
			return "", err
		}
	}
	return bin, nil
}

// run sends one record and returns the harness's result for it.
func (h *harness) run(t testing.TB, kind byte, data []byte) int64 {
	t.Helper()
	v, err := strconv.ParseInt(h.runText(t, kind, data), 10, 64)
	if err != nil {
		t.Fatalf("harness said %v", err)
	}
	return v
}

// runText sends one record and returns the harness's answer as text (hex
// for kinds 11 and 12).
func (h *harness) runText(t testing.TB, kind byte, data []byte) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := binary.LittleEndian.AppendUint32([]byte{kind}, uint32(len(data)))
	rec = append(rec, data...)
	if _, err := h.in.Write(rec); err != nil {
		t.Fatalf("harness died: %v\n%s", err, h.stderr)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		h.cmd.Wait()
		t.Fatalf("harness died on kind %d input %q: %v\n%s", kind, trim(data), err, h.stderr)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != strconv.Itoa(int(kind)) {
		t.Fatalf("harness said %q", line)
	}
	return f[1]
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

func u16(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// kerb builds a serialization header by hand: MessageType, then three
// UNICODE_STRINGs (length, max, offset), then tail.
func kerb(ls [3][3]uint64, tail []byte) []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b, 2)
	for i, l := range ls {
		off := 8 + 16*i
		binary.LittleEndian.PutUint16(b[off:], uint16(l[0]))
		binary.LittleEndian.PutUint16(b[off+2:], uint16(l[1]))
		binary.LittleEndian.PutUint64(b[off+8:], l[2])
	}
	return append(b, tail...)
}

func TestSanitizedHostileInput(t *testing.T) {
	h := sanitized(t)
	big := strings.Repeat("7", 4000)
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		kind byte
		in   []byte
		want int64
	}{
		{"request", 1, append([]byte{2, 0}, "tanaka\x00windows-logon\x00123456\x00"...), 4 + 3 + 2 + 6 + 2 + 13 + 2 + 0 + 2 + 6},
		{"request: 4,000-character code", 1, append([]byte{2, 0}, "tanaka\x00s\x00"+big+"\x00"...), 0},
		{"request: control character", 1, append([]byte{2, 0}, "tan\x01ka\x00s\x00123456\x00"...), 0},
		{"request: empty user", 1, append([]byte{2, 0}, "\x00s\x00123456\x00"...), 0},
		{"request: 256-byte user", 1, append([]byte{2, 0}, strings.Repeat("u", 256)+"\x00s\x00c\x00"...), 4 + 3 + 2 + 256 + 2 + 1 + 2 + 2 + 1},
		{"request: 257-byte user", 1, append([]byte{2, 0}, strings.Repeat("u", 257)+"\x00s\x00c\x00"...), 0},
		{"answer: allow", 2, []byte{2, 0, 0, 0, 2, 2, 0}, 0},
		{"answer: locked", 2, []byte{2, 0, 0, 0, 2, 2, 2}, 2},
		{"answer: unknown verdict is a denial", 2, []byte{2, 0, 0, 0, 2, 2, 9}, 1},
		{"answer: wrong length", 2, []byte{2, 0, 0, 0, 3, 2, 0}, -1},
		{"answer: short", 2, []byte{2, 0, 0, 0, 2, 2}, -1},
		{"answer: wrong version", 2, []byte{2, 0, 0, 0, 2, 1, 0}, -1},
		{"utf-16: Japanese", 3, u16("日本語"), 9},
		{"utf-16: emoji (surrogate pair)", 3, u16("😀"), 4},
		{"utf-16: unpaired high surrogate", 3, []byte{0x00, 0xd8}, -1},
		{"utf-16: unpaired low surrogate", 3, []byte{0x00, 0xdc, 'a', 0}, -1},
		{"utf-16: high surrogate at the end", 3, []byte{'a', 0, 0x3d, 0xd8}, -1},
		{"utf-16: does not fit", 3, u16(strings.Repeat("あ", 30)), -1},
		{"user: plain", 4, u16("tanaka"), 0},
		{"user: DOMAIN\\", 4, u16(`CORP\`), -1},
		{"user: @domain", 4, u16("@corp"), -1},
		{"user: empty", 4, nil, -1},
		{"user: 4,000 characters", 4, u16(strings.Repeat("a", 4000)), -1},
		{"user: many backslashes", 4, u16(strings.Repeat(`\`, 200) + "x"), 0},
		{"code: digits", 5, []byte("123456"), -1},
		{"code: recovery", 5, []byte("abcde-fghjk"), 0},
		{"code: 4,000 characters", 5, []byte(big), -11},
		{"code: tab", 5, []byte("12\t456"), -11},
		{"code: UTF-8 (a PIN may be any text)", 5, []byte("１２３４５６"), -1},
		{"code: DEL", 5, []byte("1234\x7f6"), -11},
		{"code: 256 bytes", 5, []byte(strings.Repeat("あ", 85) + "a"), -1},
		{"code: 257 bytes", 5, []byte(strings.Repeat("あ", 85) + "ab"), -11},
		{"kerb: empty", 6, nil, -1},
		{"kerb: header only, empty strings", 6, kerb([3][3]uint64{{0, 0, 64}, {0, 0, 64}, {0, 0, 64}}, nil), 0},
		{"kerb: offset past the end", 6, kerb([3][3]uint64{{2, 2, 66}, {0, 0, 64}, {0, 0, 64}}, []byte{1, 2}), -1},
		{"kerb: length past the end", 6, kerb([3][3]uint64{{4, 4, 64}, {0, 0, 64}, {0, 0, 64}}, []byte{1, 2}), -1},
		{"kerb: offset into the header", 6, kerb([3][3]uint64{{2, 2, 8}, {0, 0, 64}, {0, 0, 64}}, nil), -1},
		{"kerb: odd length", 6, kerb([3][3]uint64{{1, 2, 64}, {0, 0, 64}, {0, 0, 64}}, []byte{1, 2}), -1},
		{"kerb: max below length", 6, kerb([3][3]uint64{{2, 0, 64}, {0, 0, 64}, {0, 0, 64}}, []byte{1, 2}), -1},
		{"kerb: offset overflows", 6, kerb([3][3]uint64{{2, 2, 1<<64 - 1}, {0, 0, 64}, {0, 0, 64}}, []byte{1, 2}), -1},
		{"pack round trip", 7, append(append(append(u16("PC"), 0, 0), append(u16("tanaka"), 0, 0)...), append(u16("Pässw0rd 日本"), 0, 0)...), 64 + 2*(2+6+11)},
		{"pack round trip: empty strings", 7, []byte{0, 0, 0, 0, 0, 0}, 64},
		{"break-glass: empty file", 8, nil, 0},
		{"break-glass: no newline, long line", 8, []byte("tanaka " + strings.Repeat("a", 5000)), 0},
		{"break-glass: odd salt", 8, []byte("tanaka abc " + hash + "\n"), 0},
		{"break-glass: salt of 200 hex", 8, []byte("tanaka " + strings.Repeat("ab", 100) + " " + hash + "\n"), 0},
		{"break-glass: NUL bytes", 8, []byte("tanaka\x00 00 " + hash + "\n\x00\x00\n"), 0},
		{"used line", 9, []byte(hash + "\x00tanaka\x00windows-logon\x00"), 64 + 1 + 6 + 1 + 13 + 1 + 1 + 1 + 10 + 1},
		{"used line: bad hash", 9, []byte("abc\x00tanaka\x00s\x00"), 0},
		{"used line: spaces and 500-byte user", 9, []byte(hash + "\x00" + strings.Repeat("a b", 170) + "\x00s s\x00"), 64 + 1 + 64 + 1 + 3 + 1 + 1 + 1 + 10 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.run(t, tt.kind, tt.in); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestSanitizedBreakGlass: a code the file holds is found, its line
// removed and the others kept, under the sanitizers.
func TestSanitizedBreakGlass(t *testing.T) {
	h := sanitized(t)
	file := "# comment\nsuzuki 0102 " + strings.Repeat("0", 64) + "\ntanaka 0102 " + bgHash + "\n"
	if got := h.run(t, 8, []byte(file)); got != 1 {
		t.Fatalf("the code was not found: %d", got)
	}
}

// bgHash is the hash of recovery code "ABCDE-FGHJK" with salt 01 02, as
// the server makes it and agent/mfa writes it (mfabundle).
var bgHash = mfabundle.HashRecoveryCode([]byte{1, 2}, "ABCDEFGHJK")

// FuzzCore feeds any input to every entry point of cpcore.c under the
// sanitizers; the harness must answer every record.
func FuzzCore(f *testing.F) {
	for _, s := range []struct {
		kind byte
		in   string
	}{
		{1, "\x02\x00tanaka\x00windows-logon\x00123456\x00"}, {2, "\x02\x00\x00\x00\x02\x02\x00"}, {3, "\x00\xd8a\x00"},
		{4, "C\x00\\\x00u\x00"}, {5, "abcde-fghjk"}, {6, string(kerb([3][3]uint64{{2, 2, 64}, {0, 0, 66}, {0, 0, 66}}, []byte{1, 2}))},
		{7, "P\x00\x00\x00u\x00\x00\x00p\x00\x00\x00"}, {8, "tanaka 0102 " + bgHash + "\n"}, {9, bgHash + "\x00u\x00s\x00"},
		{10, "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA\x00ABCDEFGHJK"},
	} {
		f.Add(s.kind, []byte(s.in))
	}
	sanitized(f) // built in the coordinator, before the workers start
	f.Fuzz(func(t *testing.T, kind byte, in []byte) {
		if len(in) > 1<<16 {
			return
		}
		sanitized(t).run(t, 1+kind%10, in)
	})
}
