package media

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fileLog records what leaves the terminal under an exception (例外措置):
// while an exception makes a device writable, every file closed after
// writing on one of its mounts is an event (KindFileWritten) with its path
// on the device, size, SHA-256, the process and its login user. It uses a
// fanotify FAN_CLOSE_WRITE mark on each such mount (and on no other), and
// a watch of the mount table so that a stick mounted after it was allowed
// is marked before anything is written to it.
//
// Hashing runs in one goroutine behind a bounded queue, reading at most
// hashCap bytes of each file: a large file is recorded with capped=true,
// a full queue drops the record and counts it (KindFileEventsDropped), and
// neither ever holds up the uevent path.
type fileLog struct {
	fan          int
	mounts       int // /proc/self/mountinfo, polled for changes (POLLPRI)
	stopR, stopW int
	self         int
	hashCap      int64
	emit         func(kind string, attrs map[string]string)
	resync       func() // re-reads the mount table and calls sync

	mu     sync.Mutex
	marked map[string]bool         // mount points with a mark
	byDev  map[uint64]markedDevice // st_dev → the exception's device
	jobs   chan fileJob
	wg     sync.WaitGroup
	closed atomic.Bool

	dropped  atomic.Int64
	overflow atomic.Bool
}

type fileJob struct {
	fd   int
	pid  int
	comm string
	uid  string
	dev  markedDevice
}

// fileQueue bounds the records waiting for their hash.
const fileQueue = 256

// defaultHashCap is how much of one file is hashed (512 MiB).
const defaultHashCap = 512 << 20

func openFileLog(hashCap int64, emit func(string, map[string]string), resync func()) (*fileLog, error) {
	fan, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME needs to own the file or CAP_FOWNER.
		fan, err = unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	mi, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fan)
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fan)
		unix.Close(mi)
		return nil, err
	}
	if hashCap <= 0 {
		hashCap = defaultHashCap
	}
	l := &fileLog{fan: fan, mounts: mi, stopR: p[0], stopW: p[1], self: os.Getpid(), hashCap: hashCap, emit: emit, resync: resync,
		marked: map[string]bool{}, byDev: map[uint64]markedDevice{}, jobs: make(chan fileJob, fileQueue)}
	l.wg.Add(2)
	go l.read()
	go l.hash()
	return l, nil
}

// sync marks exactly the read-write mounts of the devices in want
// (st_dev → device) and unmarks the rest.
func (l *fileLog) sync(want map[uint64]markedDevice, mounts []Mount) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	byDev := map[uint64]markedDevice{}
	keep := map[string]bool{}
	var errs []error
	for _, mt := range mounts {
		dev := unix.Mkdev(mt.Major, mt.Minor)
		md, ok := want[dev]
		if !ok || mt.ReadOnly() {
			continue
		}
		md.mountPoint = mt.MountPoint
		byDev[dev] = md
		keep[mt.MountPoint] = true
		if l.marked[mt.MountPoint] {
			continue
		}
		if err := unix.FanotifyMark(l.fan, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_CLOSE_WRITE, unix.AT_FDCWD, mt.MountPoint); err != nil {
			errs = append(errs, fmt.Errorf("fanotify mark %s: %w", mt.MountPoint, err))
			continue
		}
		l.marked[mt.MountPoint] = true
	}
	for mp := range l.marked {
		if !keep[mp] {
			// The mount may be gone already; either way it is not marked.
			_ = unix.FanotifyMark(l.fan, unix.FAN_MARK_REMOVE|unix.FAN_MARK_MOUNT, unix.FAN_CLOSE_WRITE, unix.AT_FDCWD, mp)
			delete(l.marked, mp)
		}
	}
	l.byDev = byDev
	return errors.Join(errs...)
}

func (l *fileLog) device(dev uint64) (markedDevice, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	md, ok := l.byDev[dev]
	return md, ok
}

// read takes fanotify events (and mount table changes) until closed.
func (l *fileLog) read() {
	defer l.wg.Done()
	defer close(l.jobs)
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(l.fan), Events: unix.POLLIN}, {Fd: int32(l.mounts), Events: unix.POLLPRI}, {Fd: int32(l.stopR), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if fds[2].Revents != 0 {
			return
		}
		if fds[1].Revents != 0 {
			// The mount table changed: a stick under an exception may just
			// have been mounted. Reading the file re-arms the notification.
			_, _ = unix.Seek(l.mounts, 0, io.SeekStart)
			for {
				if n, err := unix.Read(l.mounts, buf); n <= 0 || err != nil {
					break
				}
			}
			l.resync()
		}
		if fds[0].Revents == 0 {
			continue
		}
		for {
			n, err := unix.Read(l.fan, buf)
			if err != nil || n <= 0 {
				break
			}
			l.events(buf[:n])
		}
	}
}

// fanEvent is one fanotify_event_metadata record.
type fanEvent struct {
	mask    uint64
	fd, pid int
}

// parseFanEvents splits one read of the fanotify descriptor into its
// records; a truncated or malformed record ends the list.
func parseFanEvents(b []byte) []fanEvent {
	const metaLen = 24 // struct fanotify_event_metadata
	var out []fanEvent
	for len(b) >= metaLen {
		evLen := int(binary.NativeEndian.Uint32(b[0:4]))
		if evLen < metaLen || evLen > len(b) {
			break
		}
		out = append(out, fanEvent{mask: binary.NativeEndian.Uint64(b[8:16]),
			fd: int(int32(binary.NativeEndian.Uint32(b[16:20]))), pid: int(int32(binary.NativeEndian.Uint32(b[20:24])))})
		b = b[evLen:]
	}
	return out
}

// events handles one read of fanotify_event_metadata records.
func (l *fileLog) events(b []byte) {
	for _, e := range parseFanEvents(b) {
		mask, fd, pid := e.mask, e.fd, e.pid
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			l.overflow.Store(true)
			l.dropped.Add(1)
		}
		if fd < 0 {
			continue
		}
		if pid == l.self {
			unix.Close(fd)
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			continue
		}
		md, ok := l.device(st.Dev)
		if !ok {
			unix.Close(fd)
			continue
		}
		// The writer may be gone by the time the file is hashed.
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		uid, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/loginuid")
		j := fileJob{fd: fd, pid: pid, comm: strings.TrimSpace(string(comm)), uid: strings.TrimSpace(string(uid)), dev: md}
		select {
		case l.jobs <- j:
		default:
			unix.Close(fd)
			l.dropped.Add(1)
		}
	}
}

// hash hashes queued files and emits their records.
func (l *fileLog) hash() {
	defer l.wg.Done()
	for j := range l.jobs {
		l.emit(KindFileWritten, l.record(j))
	}
}

func (l *fileLog) record(j fileJob) map[string]string {
	f := os.NewFile(uintptr(j.fd), "fanotify")
	defer f.Close()
	a := map[string]string{}
	for k, v := range j.dev.attrs {
		a[k] = v
	}
	full, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(j.fd))
	rel := strings.TrimPrefix(full, j.dev.mountPoint)
	if !strings.HasPrefix(rel, "/") {
		rel = "/" + path.Base(full)
	}
	a["mount_point"], a["path"] = eventValue(j.dev.mountPoint), eventValue(rel)
	a["pid"], a["process"] = strconv.Itoa(j.pid), eventValue(j.comm)
	if j.comm == "" {
		// Gone (and reaped) before its close was read: a short-lived
		// writer. The record stands; who wrote it is the login user, if any.
		a["process"] = "(exited)"
	}
	if j.uid != "" && j.uid != "4294967295" { // unset loginuid: a service, not a login
		a["uid"] = j.uid
		if u, err := user.LookupId(j.uid); err == nil {
			a["user"] = eventValue(u.Username)
		}
	}
	if st, err := f.Stat(); err == nil {
		a["size_bytes"] = strconv.FormatInt(st.Size(), 10)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, l.hashCap))
	a["hashed_bytes"] = strconv.FormatInt(n, 10)
	switch {
	case err != nil:
		a["hash_error"] = eventValue(err.Error())
	case n == l.hashCap:
		a["capped"] = "true" // the file is larger: sha256 covers the first hashed_bytes
		a["sha256"] = hex.EncodeToString(h.Sum(nil))
	default:
		a["sha256"] = hex.EncodeToString(h.Sum(nil))
	}
	return a
}

func (l *fileLog) markedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.marked)
}

// takeDropped returns how many records were lost since the last call and
// whether the kernel's queue overflowed.
func (l *fileLog) takeDropped() (int64, bool) {
	return l.dropped.Swap(0), l.overflow.Swap(false)
}

func (l *fileLog) close() {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	_, _ = unix.Write(l.stopW, []byte{1})
	l.wg.Wait()
	unix.Close(l.fan)
	unix.Close(l.mounts)
	unix.Close(l.stopR)
	unix.Close(l.stopW)
}
