package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// What leaves the terminal under an exception is recorded: a stick
// allowed by an exception, mounted read-write after it was allowed; files
// written on it by another process are events with their path on the
// stick, size, SHA-256 and process; a file larger than the hash cap says
// capped; once the exception is gone the mount is read-only and no longer
// watched.
func TestIntegrationExceptionFilesRecorded(t *testing.T) {
	testenv.Short(t)
	mkfs := testenv.LookPath(t, "mkfs.ext4", "e2fsprogs")
	m, rec, st := realControl(t)
	m.o.fileHashCap = 1024
	now := time.Now()
	exc := []policy.Exception{{ID: "6f1c0e8e-0000-4000-8000-00000000f11e", Vendor: "0781", Product: "5581",
		Serial: standInSerial, Expires: now.Add(time.Hour)}}
	withExc := enforce(map[string]string{policy.SettingExceptions: policy.FormatExceptions(exc)})
	must(t, m.Apply(context.Background(), withExc))

	l := freeLoop(t)
	img := st.image(t, 32<<20)
	runCmd(t, mkfs, "-q", "-F", img)
	l.attach(t, img, false)
	waitFor(t, rec, KindExceptionUsed, l.Name)
	dir := mountExt4(t, l.Node)
	// The mount-table watch marks the new mount (no report round needed).
	deadline := time.Now().Add(5 * time.Second)
	for status(t, m).Evidence["file_log.mounts"] != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("the stick's mount was not marked within 5s: %v", status(t, m).Evidence)
		}
		time.Sleep(5 * time.Millisecond)
	}

	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	// The shell writes (printf is a builtin) and stays a moment, so that
	// its name is still there when the agent reads the close.
	sh("mkdir -p " + dir + "/住民 && printf 'hello' > " + dir + "/住民/out.txt; sleep 0.5; :")
	sh("printf '%4096s' '' > " + dir + "/big.bin; sleep 0.5; :")
	got := map[string]map[string]string{}
	deadline = time.Now().Add(5 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		select {
		case e := <-rec.ch:
			if e.kind == KindFileWritten {
				got[e.attrs["path"]] = e.attrs
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	hello := sha256.Sum256([]byte("hello"))
	a := got["/住民/out.txt"]
	if a == nil || a["sha256"] != hex.EncodeToString(hello[:]) || a["size_bytes"] != "5" || a["process"] != "sh" ||
		a["exception_id"] != exc[0].ID || a["serial"] != standInSerial || a["mount_point"] != dir || a["capped"] != "" {
		t.Errorf("record of out.txt: %v (all: %v)", a, got)
	}
	spaces := sha256.Sum256([]byte(strings.Repeat(" ", 1024)))
	if b := got["/big.bin"]; b == nil || b["capped"] != "true" || b["hashed_bytes"] != "1024" || b["size_bytes"] != "4096" ||
		b["sha256"] != hex.EncodeToString(spaces[:]) || b["process"] != "sh" {
		t.Errorf("record of big.bin (4 KiB, cap 1 KiB): %v", b)
	}

	// The exception is gone: read-only again, the mount no longer watched.
	must(t, m.Apply(context.Background(), enforce(nil)))
	if ev := status(t, m).Evidence; ev["file_log.mounts"] != "0" {
		t.Errorf("after the exception: %v", ev)
	}
	if err := exec.Command("sh", "-c", "printf x > "+filepath.Join(dir, "after.txt")).Run(); err == nil {
		t.Errorf("wrote to the stick after the exception ended")
	}
	for _, e := range rec.events {
		if e.kind == KindFileWritten && strings.Contains(e.attrs["path"], "after") {
			t.Errorf("file recorded after the exception: %v", e.attrs)
		}
	}
}

// FuzzParseFanEvents: whatever a read returns, parsing ends without
// panicking and every record lies inside the buffer.
func FuzzParseFanEvents(f *testing.F) {
	rec := make([]byte, 24)
	rec[0] = 24
	rec[16] = 7
	f.Add(rec)
	f.Add(append(rec, rec[:10]...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := len(parseFanEvents(b)); n > len(b)/24 {
			t.Fatalf("%d records from %d bytes", n, len(b))
		}
	})
}
