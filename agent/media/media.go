// Package media is the "media" control: 持ち出し不可設定 for removable media.
// It keeps resident data from leaving a My Number terminal on USB sticks,
// SD cards, optical discs and phones or cameras.
//
// The control listens to kernel uevents (NETLINK_KOBJECT_UEVENT) and scans
// the devices already present when it starts; it never polls. For every
// block device it classifies (see Classifier) it applies what the policy
// demands (see ParseSettings and Decide):
//
//   - read-only: BLKROSET on the disk and each partition as it appears;
//     a filesystem from it that is mounted read-write is remounted
//     read-only; optical drive nodes (sr, sg) lose their write bits, which
//     closes SG_IO burning to everyone without CAP_SYS_RAWIO;
//   - block: the USB interface is deauthorised (sysfs "authorized"), so
//     the device disappears (MTP/PTP interfaces too);
//   - allow: an allow-listed device is made writable again (the udev rule
//     makes every removable disk read-only before the agent sees it).
//
// In monitor mode it reports what it would have done and changes nothing.
// Each action is an event through the Emitter. Status reads the state back
// (BLKROGET, mountinfo, authorized) rather than trusting what was set, and
// checks that the udev rule shipped by the installer is in place.
//
// This file holds the decisions; media_linux.go only the system calls;
// elsewhere the control reports NOT_APPLICABLE.
package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Event kinds the control emits.
const (
	KindSetReadOnly      = "set_read_only"       // BLKROSET done (and optical nodes closed)
	KindRemountReadOnly  = "remounted_read_only" // a rw mount of such a device is now ro
	KindUSBBlocked       = "usb_blocked"         // a USB interface was deauthorised
	KindAllowed          = "allowed"             // an allow-listed device is usable
	KindWouldBlock       = "would_block"         // monitor mode: what enforce would do
	KindEnforcementError = "enforcement_failed"  // an action failed; the device may be writable
	// KindExceptionUsed: a device was allowed because of an exception
	// (例外措置); attributes exception_id, serial, user.
	KindExceptionUsed = "media_exception_used"
	// KindWritesCut: a filesystem of a device the policy makes read-only
	// (or blocks) was mounted read-write and busy; the device was taken
	// offline, the filesystem shut down and detached, and the device
	// plugged in again in software (see cutLocked). Attributes
	// mount_point, fstype, writers (pid:comm), fs_shutdown, method,
	// offline_at (from then on nothing reached the device), offline_ms
	// and cut_ms (how long taking it offline and the whole cut took).
	KindWritesCut = "writes_cut"
	// KindReapplied: the read-back found a governed device not in the
	// state the policy demands and the control acted again (problem,
	// attempt).
	KindReapplied = "reapplied"
	// KindStillWritable: a governed device stayed writable for more than
	// one status round despite re-applying (rounds, problem): an incident.
	KindStillWritable = "still_writable"
	// KindFileWritten: under an exception, a file on the excepted device
	// was closed after writing (what left the terminal): exception_id,
	// device, serial, mount_point, path, size_bytes, sha256,
	// hashed_bytes (capped=true when the file was larger than the hash
	// cap), pid, process, uid, user. See fileLog.
	KindFileWritten = "media_file_written"
	// KindFileEventsDropped: records of files written under an exception
	// were lost (count; overflow=true when the kernel's queue overflowed).
	KindFileEventsDropped = "media_file_events_dropped"
)

// Options configure the control. Emitter is required; the paths default to
// the real system and are parameters so that tests can point elsewhere.
type Options struct {
	Emitter control.Emitter
	Log     *slog.Logger
	// SysRoot is sysfs, default "/sys".
	SysRoot string
	// DevRoot holds the device nodes, default "/dev".
	DevRoot string
	// MountInfo is read to find mounted filesystems, default
	// "/proc/self/mountinfo".
	MountInfo string
	// ProcRoot is procfs, read for the processes holding a busy mount
	// writable, default "/proc".
	ProcRoot string
	// UdevRule is where the installer puts the rule, default
	// DefaultUdevRulePath. UdevOverrideDirs are checked for a file of the
	// same name that would mask it (default /etc/udev/rules.d and
	// /run/udev/rules.d).
	UdevRule         string
	UdevOverrideDirs []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sessions tells who is logged in, for exceptions bound to a user;
	// nil means the platform's (utmp on Linux). An exception naming a
	// user is honoured only while Sessions lists that user.
	Sessions Sessions

	// override, when set, rewrites every classification (block devices
	// and USB interfaces): tests make loop devices stand in for USB sticks
	// and make everything else on the machine ungoverned. It is not
	// exported on purpose.
	override func(d Device) Device
	// acted, when set, is called after each read-only action with the
	// time the uevent was read (zero for the start-up scan). Benchmarks.
	acted func(d Device, received time.Time)
	// fileHashCap bounds how much of a file written under an exception
	// is hashed; 0 means defaultHashCap. Tests.
	fileHashCap int64
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.DevRoot == "" {
		o.DevRoot = "/dev"
	}
	if o.MountInfo == "" {
		o.MountInfo = "/proc/self/mountinfo"
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.UdevRule == "" {
		o.UdevRule = DefaultUdevRulePath
	}
	if o.UdevOverrideDirs == nil {
		o.UdevOverrideDirs = []string{"/etc/udev/rules.d", "/run/udev/rules.d"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sessions == nil {
		o.Sessions = platformSessions()
	}
}

// Media is the media control. Apply starts the listener on first use;
// Close stops it. It is safe for concurrent use.
type Media struct {
	o   Options
	cls Classifier

	mu         sync.Mutex
	configured bool // Apply has been called at least once
	enforce    bool
	settings   Settings
	settingsOK error
	lastKey    string   // settings+mode last applied, to rescan only on change
	users      []string // logged-in users at the last Apply, when read
	devices    map[string]*tracked
	running    bool
	listenErr  error // the listener died; nothing new is enforced
	src        ueventSource
	outbox     []queuedEvent // events to emit once the lock is released
	cancel     context.CancelFunc
	done       chan struct{}
	// cut holds the SCSI devices this control took offline in this round,
	// so that the rest of a scan does not act on their other partitions
	// (they come back through uevents as new devices, after the round:
	// replugPendingLocked empties it, so a device that comes back under
	// the same sysfs path is not mistaken for the old one).
	cut map[string]bool
	// replugs are the cut devices waiting to be plugged in again: every
	// device of a scan is taken offline first, then they come back
	// (replugPendingLocked), so that the last of several busy sticks is not
	// written to while the first ones are re-enumerated.
	replugs []replug
	// systemDisks are the disks (sysfs path) holding the running system
	// (see findSystemDisks), read at each scan: never governed, whatever
	// the classifier says — a USB-booted terminal or an NVMe boot disk in
	// a hot-plug slot must not be made read-only under the system.
	systemDisks map[string]string
	// systemSkipped: devices the classifier governs that were left alone
	// because they hold the system (name → mount point), for Status.
	systemSkipped map[string]string

	// excDevs are the block devices writable because of an exception
	// (device number → what the file records say about them); flog
	// records the files written on their mounts (fileLog), opened on
	// first need. flogErr is why it could not be opened or marked.
	excDevs map[uint64]markedDevice
	flog    *fileLog
	flogErr error
}

type replug struct {
	cut   offlined
	attrs map[string]string
}

// offlined is a device taken offline by offlineLocked, waiting for
// finishCutLocked.
type offlined struct {
	dev       Device
	rw        []Mount
	attrs     map[string]string
	method    string
	start     time.Time
	offline   time.Duration
	offlineAt string
}

// tracked is one device the control governs and what it did about it.
type tracked struct {
	dev     Device
	action  Action
	rule    string
	done    string // what was done: "read-only", "blocked", "allowed", "would block", "no medium"
	err     error
	known   bool // handled alike before (same action and mode): no repeat events
	enforce bool // the mode it was handled in

	// The read-back's bookkeeping (see reapplyLocked): how often it acted
	// again, when it may next, and for how many status rounds in a row
	// the device was found not as demanded.
	attempts  int
	retryAt   time.Time
	badRounds int
}

// New returns the media control; it does nothing until the first Apply.
func New(o Options) *Media {
	o.defaults()
	return &Media{o: o, cls: Classifier{Root: o.SysRoot}, settings: DefaultSettings(), devices: map[string]*tracked{}, cut: map[string]bool{}, excDevs: map[uint64]markedDevice{}}
}

var _ control.Control = (*Media)(nil)

// Name is "media".
func (m *Media) Name() string { return policy.ControlMedia }

// Apply reads the policy, starts the uevent listener and the start-up scan
// on first use, and re-evaluates every present device when the policy
// changed. A nil policy means monitor mode with the default settings.
// Invalid settings are an error and the defaults (fail closed) are
// enforced meanwhile.
func (m *Media) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	if !platformSupported {
		return nil
	}
	defer m.flush(ctx)
	if m.o.Emitter == nil {
		return errors.New("media: an emitter is required")
	}
	s, err := ParseSettings(p.GetSettings())
	enforce := p.GetMode() == mamoriv1.Mode_MODE_ENFORCE
	users := m.exceptionUsers(ctx, s.Exceptions)
	s.Exceptions = activeExceptions(s.Exceptions, m.o.Now(), users, true)
	key := fmt.Sprint(enforce, s)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.configured = true
	m.settingsOK = err
	m.users = users
	restarted := false
	if !m.running {
		// First Apply, or the listener died: (re)start it.
		m.listenErr = m.startLocked()
		if m.listenErr != nil {
			return errors.Join(err, m.listenErr)
		}
		restarted = true
	}
	if key != m.lastKey || restarted { // uevents may have been missed: rescan
		m.enforce, m.settings, m.lastKey = enforce, s, key
		m.scanLocked(ctx)
	}
	return err
}

// startLocked opens the uevent socket before scanning, so that nothing
// plugged in during the scan is missed.
func (m *Media) startLocked() error {
	src, err := openUevents()
	if err != nil {
		return fmt.Errorf("listen for kernel uevents: %w (the agent must run as root)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.src, m.cancel, m.done, m.running = src, cancel, make(chan struct{}), true
	go m.listen(ctx, src)
	return nil
}

// Close stops the listener and waits for it (at most 5 s). Settings the
// control made (read-only flags, deauthorised interfaces) stay.
func (m *Media) Close() error {
	m.mu.Lock()
	src, cancel, done := m.src, m.cancel, m.done
	m.src, m.running = nil, false
	flog := m.flog
	m.flog = nil
	m.mu.Unlock()
	if flog != nil {
		flog.close() // not under m.mu: its reader may be waiting for it
	}
	if src == nil {
		return nil
	}
	cancel()
	err := src.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return errors.New("media: listener did not stop within 5s")
	}
	return err
}

// ueventSource delivers raw kernel uevents; Close unblocks Read.
type ueventSource interface {
	// Read returns one uevent. errOverflow means uevents were lost and a
	// rescan is due.
	Read(buf []byte) (int, error)
	Close() error
}

var errOverflow = errors.New("uevent receive buffer overflowed: uevents were lost")

func (m *Media) listen(ctx context.Context, src ueventSource) {
	defer close(m.done)
	if c, ok := src.(interface{ closeFDs() }); ok {
		defer c.closeFDs()
	}
	buf := make([]byte, 16384)
	for {
		n, err := src.Read(buf)
		received := time.Now()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errOverflow) {
			m.o.Log.Warn("media: " + err.Error() + "; rescanning")
			m.mu.Lock()
			m.scanLocked(ctx)
			m.mu.Unlock()
			m.flush(ctx)
			continue
		}
		if err != nil {
			m.o.Log.Error("media: uevent listener stopped", "error", err)
			m.mu.Lock()
			m.running, m.listenErr = false, fmt.Errorf("uevent listener stopped: %w", err)
			m.mu.Unlock()
			return
		}
		ev, err := ParseUevent(buf[:n])
		if err != nil {
			if !errors.Is(err, errNotKernel) {
				m.o.Log.Warn("media: ignoring a malformed uevent", "error", err)
			}
			continue
		}
		m.handle(ctx, ev, received)
		m.flush(ctx)
	}
}

// handle acts on one uevent.
func (m *Media) handle(ctx context.Context, ev Uevent, received time.Time) {
	switch {
	case ev.Subsystem == "block" && (ev.DevType == "disk" || ev.DevType == "partition"):
	case ev.Subsystem == "usb" && ev.DevType == "usb_interface":
	default:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Action {
	case "remove", "unbind":
		if ev.Action == "remove" {
			delete(m.devices, ev.DevPath)
		}
		return
	case "add", "change", "bind", "online", "move":
	default:
		return
	}
	var d Device
	var err error
	if ev.Subsystem == "block" {
		d, err = m.cls.BlockFromUevent(ev)
		if err == nil && m.o.override != nil {
			d = m.o.override(d)
		}
	} else {
		d, err = m.classifyUSB(ev.DevPath)
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) { // gone again already
			m.o.Log.Warn("media: cannot classify a device", "devpath", ev.DevPath, "error", err)
		}
		return
	}
	m.evaluateLocked(ctx, d, received)
	m.afterRoundLocked(ctx)
}

func (m *Media) classifyBlock(sysPath string) (Device, error) {
	d, err := m.cls.BlockAt(sysPath)
	if err == nil && m.o.override != nil {
		d = m.o.override(d)
	}
	return d, err
}

func (m *Media) classifyUSB(sysPath string) (Device, error) {
	d, err := m.cls.USBInterface(sysPath)
	if err == nil && m.o.override != nil {
		d = m.o.override(d)
	}
	return d, err
}

// scanLocked evaluates every device present: at start and after a policy
// change or lost uevents.
func (m *Media) scanLocked(ctx context.Context) {
	var all []Device
	ents, err := os.ReadDir(filepath.Join(m.o.SysRoot, "class/block"))
	if err != nil {
		m.o.Log.Error("media: cannot list block devices", "error", err)
	}
	for _, e := range ents {
		sp, err := m.cls.resolve("class/block/" + e.Name())
		if err != nil {
			continue
		}
		d, err := m.classifyBlock(sp)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				m.o.Log.Warn("media: cannot classify a device", "device", e.Name(), "error", err)
			}
			continue
		}
		all = append(all, d)
	}
	ifaces, err := m.cls.USBInterfaces()
	if err != nil {
		m.o.Log.Warn("media: cannot classify some USB interfaces", "error", err)
	}
	for _, d := range ifaces {
		if m.o.override != nil {
			d = m.o.override(d)
		}
		all = append(all, d)
	}
	m.systemDisks = m.findSystemDisks(all)
	m.systemSkipped = map[string]string{}
	// Forget what is gone; evaluate the rest, disks before partitions.
	present := map[string]bool{}
	for _, d := range all {
		present[d.SysPath] = true
	}
	for k := range m.devices {
		if !present[k] {
			delete(m.devices, k)
		}
	}
	slices.SortStableFunc(all, func(a, b Device) int { return len(a.SysPath) - len(b.SysPath) })
	for _, d := range all {
		m.evaluateLocked(ctx, d, time.Time{})
	}
	m.afterRoundLocked(ctx)
}

// evaluateLocked decides and acts on one device.
func (m *Media) evaluateLocked(ctx context.Context, d Device, received time.Time) {
	s := m.settings
	// Expiry is checked again here: a device plugged in between two
	// rounds must not ride on an exception that has just run out.
	s.Exceptions = activeExceptions(s.Exceptions, m.o.Now(), nil, false)
	action, rule := Decide(s, d)
	if d.DevType != "usb_interface" {
		delete(m.excDevs, mkdev(d.Major, d.Minor))
	}
	if mp, ok := m.systemDisks[diskPathOf(d)]; ok && d.DevType != "usb_interface" && action != ActionNone {
		if _, seen := m.systemSkipped[d.Name]; !seen {
			m.o.Log.Warn("media: not governing the disk that holds the system", "device", d.Name, "mount_point", mp, "class", d.Class.String(), "reason", d.Reason)
		}
		if m.systemSkipped != nil {
			m.systemSkipped[d.Name] = mp
		}
		action = ActionNone
	}
	if action == ActionNone {
		delete(m.devices, d.SysPath)
		return
	}
	// Of USB interfaces only MTP/PTP ones are governed here. A
	// mass-storage interface is handled through its disks: only the disk
	// tells a CD drive (optical) from a stick (storage).
	if d.DevType == "usb_interface" && d.Class != ClassMTP {
		return
	}
	if d.SCSIDevice != "" && m.cut[d.SCSIDevice] {
		return // its disk was just cut off and comes back as a new device
	}
	prev := m.devices[d.SysPath]
	known := prev != nil && prev.action == action && prev.enforce == m.enforce && prev.err == nil
	t := &tracked{dev: d, action: action, rule: rule, known: known, enforce: m.enforce}
	m.devices[d.SysPath] = t
	attrs := eventAttrs(d, action, rule, m.enforce)
	if id, ok := strings.CutPrefix(rule, RuleException); ok && !t.known {
		// Every use of an exception is recorded on the device.
		a := maps.Clone(attrs)
		a["exception_id"] = id
		for _, e := range s.Exceptions {
			if e.ID == id {
				a["user"] = e.User
			}
		}
		if a["user"] == "" {
			a["user"] = strings.Join(m.users, ",")
		}
		m.emit(ctx, KindExceptionUsed, a)
	}

	if !m.enforce {
		if action == ActionAllow {
			t.done = "allowed"
			return
		}
		t.done = "would " + string(action)
		if action == ActionReadOnly && d.DevType != "usb_interface" && m.isReadOnly(d) {
			t.done = "read-only (already)"
			return
		}
		if !t.known {
			m.emit(ctx, KindWouldBlock, attrs)
		}
		return
	}
	switch action {
	case ActionAllow:
		t.done = "allowed"
		if id, ok := strings.CutPrefix(rule, RuleException); ok && d.DevType != "usb_interface" {
			m.excDevs[mkdev(d.Major, d.Minor)] = markedDevice{attrs: exceptionAttrs(d, id)}
		}
		if d.DevType != "usb_interface" {
			if err := setBlockRO(m.node(d), false); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.err = fmt.Errorf("make %s writable: %w", d.Name, err)
			}
			for _, n := range m.nodes(d) {
				if err := restoreWriteBits(n); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.err = errors.Join(t.err, fmt.Errorf("reopen %s to writers: %w", n, err))
				}
			}
		} else if d.USBInterface != "" {
			t.err = writeAuthorized(filepath.Join(m.o.SysRoot, d.USBInterface), true)
		}
		if t.err != nil {
			attrs["error"] = t.err.Error()
			m.emit(ctx, KindEnforcementError, attrs)
		} else if !t.known {
			m.emit(ctx, KindAllowed, attrs)
		}
	case ActionBlock:
		if d.USBInterface == "" {
			// Not on USB (an SD slot, FireWire): nothing to deauthorise.
			// Read-only is the strongest thing we can do; say so.
			attrs["note"] = "block needs a USB interface; made read-only instead"
			m.readOnlyLocked(ctx, t, attrs, received)
			return
		}
		// Read-only first (instant), then the interface goes away.
		if d.DevType != "usb_interface" && d.SizeBytes > 0 {
			_ = setBlockRO(m.node(d), true)
			// A filesystem mounted read-write on it is severed first: a
			// deauthorised device takes buffered writes down with it
			// silently; shut down, the writers get EIO instead.
			if rw := m.diskRWMounts(d); len(rw) > 0 {
				if err := m.severLocked(ctx, d, rw, attrs, "usb-deauthorise"); err != nil {
					a := maps.Clone(attrs)
					a["error"] = err.Error()
					m.emit(ctx, KindEnforcementError, a)
				}
			}
		}
		err := writeAuthorized(filepath.Join(m.o.SysRoot, d.USBInterface), false)
		if err != nil {
			t.err = fmt.Errorf("deauthorise USB interface %s: %w", path.Base(d.USBInterface), err)
			attrs["error"] = t.err.Error()
			m.emit(ctx, KindEnforcementError, attrs)
			return
		}
		t.done = "blocked"
		attrs["usb_interface"] = path.Base(d.USBInterface)
		if !t.known {
			m.emit(ctx, KindUSBBlocked, attrs)
		}
	case ActionReadOnly:
		m.readOnlyLocked(ctx, t, attrs, received)
	}
}

func (m *Media) readOnlyLocked(ctx context.Context, t *tracked, attrs map[string]string, received time.Time) {
	d := t.dev
	if d.SizeBytes == 0 && d.Class != ClassOptical {
		// No medium (an empty card reader slot, a detached loop). The
		// kernel sends "change" when a medium arrives.
		t.done = "no medium"
		return
	}
	node := m.node(d)
	was, err := makeBlockRO(node)
	if err != nil {
		t.err = fmt.Errorf("set read-only %s: %w", node, err)
		attrs["error"] = t.err.Error()
		m.emit(ctx, KindEnforcementError, attrs)
		return
	}
	if m.o.acted != nil {
		m.o.acted(d, received)
	}
	t.done = "read-only"
	var errs []error
	// BLKROSET does not stop SCSI pass-through: SG_IO WRITE(10) (or a
	// burn command) through the disk, its sg or its bsg node needs only a
	// write open, which group "disk" (or "cdrom") has. Every node loses
	// its write bits; root keeps CAP_SYS_RAWIO (see docs/policy.md).
	for _, n := range m.nodes(d) {
		if err := dropWriteBits(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("close %s to writers: %w", n, err))
		}
	}
	if was {
		attrs["already_read_only"] = "true" // the udev rule or the kernel was first
	}
	if !was || !t.known {
		m.emit(ctx, KindSetReadOnly, attrs)
	}
	errs = append(errs, m.remountLocked(ctx, d, attrs))
	if err := errors.Join(errs...); err != nil {
		t.err = err
		a := maps.Clone(attrs)
		a["error"] = err.Error()
		m.emit(ctx, KindEnforcementError, a)
	}
}

// remountLocked remounts read-only every read-write mount of d. A mount
// the kernel refuses to remount because files are open for writing on it
// (EBUSY) is cut off (cutLocked): with BLKROSET set the kernel only warns
// about the writes of a filesystem mounted before, and lets them through.
func (m *Media) remountLocked(ctx context.Context, d Device, attrs map[string]string) error {
	mounts, err := m.mounts()
	if err != nil {
		return err
	}
	var errs []error
	var busy []Mount
	for _, mt := range mounts {
		if mt.Major != d.Major || mt.Minor != d.Minor || mt.ReadOnly() {
			continue
		}
		if err := remountRO(mt.MountPoint); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				busy = append(busy, mt)
				continue
			}
			errs = append(errs, fmt.Errorf("remount %s read-only: %w", mt.MountPoint, err))
			continue
		}
		a := maps.Clone(attrs)
		a["mount_point"], a["fstype"] = mt.MountPoint, mt.FSType
		m.emit(ctx, KindRemountReadOnly, a)
	}
	if len(busy) > 0 {
		// The whole disk goes offline: its other partitions' read-write
		// mounts are severed with the busy ones.
		for _, mt := range m.diskRWMounts(d) {
			if !slices.ContainsFunc(busy, func(b Mount) bool { return b.ID == mt.ID }) {
				busy = append(busy, mt)
			}
		}
		errs = append(errs, m.cutLocked(ctx, d, busy, attrs))
	}
	return errors.Join(errs...)
}

// diskRWMounts returns the read-write mounts of d's whole disk: the disk
// itself and each of its partitions (nil when mountinfo cannot be read:
// the read-back reports that).
func (m *Media) diskRWMounts(d Device) []Mount {
	diskDir := d.SysPath
	if d.DevType == "partition" {
		diskDir = path.Dir(d.SysPath)
	}
	devs := map[[2]uint32]bool{{d.Major, d.Minor}: true}
	if dev, err := m.cls.read(diskDir, "dev"); err == nil {
		if ma, mi, err := parseMajMin(dev); err == nil {
			devs[[2]uint32{ma, mi}] = true
		}
	}
	ents, _ := os.ReadDir(filepath.Join(m.o.SysRoot, diskDir))
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(m.o.SysRoot, diskDir, e.Name(), "partition")); err != nil {
			continue
		}
		if dev, err := m.cls.read(path.Join(diskDir, e.Name()), "dev"); err == nil {
			if ma, mi, err := parseMajMin(dev); err == nil {
				devs[[2]uint32{ma, mi}] = true
			}
		}
	}
	mounts, _ := m.mounts()
	var out []Mount
	for _, mt := range mounts {
		if devs[[2]uint32{mt.Major, mt.Minor}] && !mt.ReadOnly() {
			out = append(out, mt)
		}
	}
	return out
}

// systemMountPoints are where the running system lives: a disk holding one
// of them is never governed.
var systemMountPoints = []string{"/", "/usr", "/boot", "/boot/efi", "/var", "/home"}

// diskPathOf is the sysfs path of d's whole disk.
func diskPathOf(d Device) string {
	if d.DevType == "partition" {
		return path.Dir(d.SysPath)
	}
	return d.SysPath
}

// findSystemDisks maps the disks holding a system mount point (through
// partitions and device-mapper/md slaves: root on LVM on NVMe) to that
// mount point. devs are the block devices of the scan.
func (m *Media) findSystemDisks(devs []Device) map[string]string {
	out := map[string]string{}
	mounts, err := m.mounts()
	if err != nil {
		return out
	}
	byNum := map[[2]uint32]string{}
	byName := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(m.o.SysRoot, "class/block"))
	for _, e := range ents {
		sp, err := m.cls.resolve("class/block/" + e.Name())
		if err != nil {
			continue
		}
		byName[e.Name()] = sp
		if dev, err := m.cls.read(sp, "dev"); err == nil {
			if ma, mi, err := parseMajMin(dev); err == nil {
				byNum[[2]uint32{ma, mi}] = sp
			}
		}
	}
	var walk func(sp, mp string, depth int)
	walk = func(sp, mp string, depth int) {
		if depth > 8 {
			return
		}
		if slaves, err := os.ReadDir(filepath.Join(m.o.SysRoot, sp, "slaves")); err == nil && len(slaves) > 0 {
			for _, sl := range slaves {
				if s, ok := byName[sl.Name()]; ok {
					walk(s, mp, depth+1)
				}
			}
			return
		}
		if _, err := os.Stat(filepath.Join(m.o.SysRoot, sp, "partition")); err == nil {
			sp = path.Dir(sp)
		}
		if _, dup := out[sp]; !dup {
			out[sp] = mp
		}
	}
	for _, mt := range mounts {
		if !slices.Contains(systemMountPoints, mt.MountPoint) {
			continue
		}
		if sp, ok := byNum[[2]uint32{mt.Major, mt.Minor}]; ok {
			walk(sp, mt.MountPoint, 0)
		}
	}
	return out
}

// nodes are the device nodes through which d can be written: its block
// node and, for a SCSI disk, its pass-through nodes.
func (m *Media) nodes(d Device) []string {
	out := []string{m.node(d)}
	sg, bsg := m.cls.PassThrough(d.SCSIDevice)
	if d.SCSIGeneric != "" {
		sg = d.SCSIGeneric
	}
	for _, n := range []string{sg, bsg} {
		if n != "" {
			out = append(out, filepath.Join(m.o.DevRoot, n))
		}
	}
	return out
}

// cutLocked stops every write to d from filesystems mounted read-write
// before the control acted and kept busy by open files (busy): it severs
// them (severLocked) and plugs the device in again in software, so that it
// comes back as a new device the udev rule and the uevent path make
// read-only before anything can mount it. What a user with an open file
// sees is in docs/policy.md.
func (m *Media) cutLocked(ctx context.Context, d Device, busy []Mount, attrs map[string]string) error {
	if d.SCSIDevice == "" {
		return fmt.Errorf("%s is mounted read-write on %s with files open for writing, and it is not a SCSI device the control can take offline: unplug it", d.Name, busy[0].MountPoint)
	}
	method := "scsi-delete-rescan"
	if d.Bus == "usb" && d.USBInterface != "" {
		method = "usb-replug"
	}
	c, err := m.offlineLocked(d, busy, attrs, method)
	if err != nil {
		return err
	}
	// The rest waits for the end of the round, so that every busy device
	// of a scan goes offline before any is shut down, detached and
	// re-plugged (afterRoundLocked).
	m.cut[d.SCSIDevice] = true
	m.replugs = append(m.replugs, replug{cut: c, attrs: maps.Clone(attrs)})
	return nil
}

// afterRoundLocked finishes a round of evaluations: the devices cut off
// come back, and the file log follows the devices under exceptions.
func (m *Media) afterRoundLocked(ctx context.Context) {
	m.replugPendingLocked(ctx)
	m.syncFileLogLocked(ctx)
}

// syncFileLogLocked marks the read-write mounts of the devices writable
// because of an exception, and only those (fileLog).
func (m *Media) syncFileLogLocked(ctx context.Context) {
	if m.flog == nil {
		if len(m.excDevs) == 0 || !m.enforce {
			return
		}
		var l *fileLog
		var err error
		l, err = openFileLog(m.o.fileHashCap, func(kind string, a map[string]string) {
			if err := m.o.Emitter.Emit(context.Background(), policy.ControlMedia, kind, a); err != nil {
				m.o.Log.Error("media: could not record a file written under an exception", "path", a["path"], "error", err)
			}
		}, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			// Only the log in use re-syncs: one Close has taken away
			// (and is closing) must not open another.
			if l != nil && m.flog == l {
				m.syncFileLogLocked(context.Background())
			}
		})
		if err != nil {
			m.flogErr = err
			m.o.Log.Error("media: cannot record files written under exceptions", "error", err)
			return
		}
		m.flog = l
	}
	want := m.excDevs
	if !m.enforce {
		want = nil
	}
	mounts, err := m.mounts()
	if err == nil {
		err = m.flog.sync(want, mounts)
	}
	if err != nil {
		m.o.Log.Error("media: cannot record files written under exceptions", "error", err)
	}
	m.flogErr = err
}

// replugPendingLocked plugs the devices cut off in this round in again.
func (m *Media) replugPendingLocked(ctx context.Context) {
	for _, r := range m.replugs {
		if err := m.finishCutLocked(ctx, r.cut); err != nil {
			a := maps.Clone(r.attrs)
			a["error"] = err.Error()
			m.emit(ctx, KindEnforcementError, a)
		}
	}
	for _, r := range m.replugs {
		d := r.cut.dev
		var err error
		if r.cut.method == "usb-replug" {
			err = replugUSB(filepath.Join(m.o.SysRoot, path.Dir(d.USBInterface)))
		} else {
			err = replugSCSI(m.o.SysRoot, d.SCSIDevice)
		}
		if err != nil {
			// Offline, it writes nothing; it just does not come back.
			r.attrs["error"] = fmt.Sprintf("%s is offline (no more writes) but could not be plugged in again (%s): %v; unplug and plug it", d.Name, r.cut.method, err)
			m.emit(ctx, KindEnforcementError, r.attrs)
		}
	}
	m.replugs = nil
	clear(m.cut)
}

// severLocked makes sure not one more byte reaches d from the read-write
// mounts rw: first the SCSI device goes offline (the mid-layer then fails
// every command, so nothing the filesystem or the page cache still holds
// can be written); then each filesystem is shut down where it has
// FS_IOC_SHUTDOWN (writers get EIO at once) and detached. One
// writes_cut event per mount says who held it writable.
func (m *Media) severLocked(ctx context.Context, d Device, rw []Mount, attrs map[string]string, method string) error {
	c, err := m.offlineLocked(d, rw, attrs, method)
	if err != nil {
		return err
	}
	return m.finishCutLocked(ctx, c)
}

// offlineLocked is the first step of severLocked: the SCSI device goes
// offline, and from then on nothing reaches it.
func (m *Media) offlineLocked(d Device, rw []Mount, attrs map[string]string, method string) (offlined, error) {
	start := time.Now()
	if d.SCSIDevice == "" {
		return offlined{}, fmt.Errorf("%s is mounted read-write on %s and is not a SCSI device the control can take offline: unplug it", d.Name, rw[0].MountPoint)
	}
	if err := scsiOffline(m.o.SysRoot, d.SCSIDevice); err != nil {
		return offlined{}, fmt.Errorf("take %s offline: %w", d.Name, err)
	}
	return offlined{dev: d, rw: rw, attrs: attrs, method: method, start: start, offline: time.Since(start),
		offlineAt: time.Now().UTC().Format(time.RFC3339Nano)}, nil
}

// finishCutLocked is the rest of severLocked: each filesystem of the
// offline device is shut down where it can be and detached, and a
// writes_cut event per mount says who held it writable.
func (m *Media) finishCutLocked(ctx context.Context, c offlined) error {
	var errs []error
	shut := map[[2]uint32]string{}
	for _, mt := range c.rw {
		a := maps.Clone(c.attrs)
		a["mount_point"], a["fstype"], a["method"] = eventValue(mt.MountPoint), mt.FSType, c.method
		a["offline_ms"] = strconv.FormatFloat(float64(c.offline.Microseconds())/1000, 'f', 3, 64)
		a["offline_at"] = c.offlineAt // from this instant the device accepts no command
		a["writers"] = strings.Join(writersOn(m.o.ProcRoot, mkdev(mt.Major, mt.Minor)), " ")
		key := [2]uint32{mt.Major, mt.Minor}
		if _, done := shut[key]; !done {
			ok, err := shutdownFS(mt.MountPoint)
			switch {
			case err != nil:
				shut[key] = "error: " + err.Error()
			case ok:
				shut[key] = "true"
			default:
				shut[key] = "unsupported" // vfat, exfat (< 6.9), ntfs3: buffered writes succeed, fsync fails
			}
		}
		a["fs_shutdown"] = shut[key]
		if err := detachMount(mt.MountPoint); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", mt.MountPoint, err))
		}
		a["cut_ms"] = strconv.FormatFloat(float64(time.Since(c.start).Microseconds())/1000, 'f', 3, 64)
		m.emit(ctx, KindWritesCut, a)
	}
	return errors.Join(errs...)
}

func (m *Media) mounts() ([]Mount, error) {
	b, err := os.ReadFile(m.o.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return ParseMountinfo(b)
}

func (m *Media) node(d Device) string { return filepath.Join(m.o.DevRoot, d.DevName) }

func (m *Media) isReadOnly(d Device) bool {
	ro, err := getBlockRO(m.node(d))
	return err == nil && ro
}

// emit queues an event; flush sends the queue. Events are sent outside
// the lock so that a slow spool (fsync) never delays the next device's
// BLKROSET.
func (m *Media) emit(_ context.Context, kind string, attrs map[string]string) {
	m.outbox = append(m.outbox, queuedEvent{kind, attrs})
}

type queuedEvent struct {
	kind  string
	attrs map[string]string
}

func (m *Media) flush(ctx context.Context) {
	m.mu.Lock()
	out := m.outbox
	m.outbox = nil
	m.mu.Unlock()
	for _, e := range out {
		if err := m.o.Emitter.Emit(ctx, policy.ControlMedia, e.kind, e.attrs); err != nil {
			m.o.Log.ErrorContext(ctx, "media: could not record an event", "kind", e.kind, "error", err)
		}
		m.o.Log.InfoContext(ctx, "media: "+e.kind, "device", e.attrs["device"], "class", e.attrs["class"], "rule", e.attrs["rule"])
	}
}

func eventAttrs(d Device, a Action, rule string, enforce bool) map[string]string {
	mode := "monitor"
	if enforce {
		mode = "enforce"
	}
	attrs := map[string]string{
		"device": d.Name, "class": d.Class.String(), "bus": d.Bus, "action": string(a),
		"rule": rule, "mode": mode, "reason": d.Reason,
		"vendor": d.Vendor, "product": d.Product, "serial": d.Serial,
		"size_bytes": strconv.FormatInt(d.SizeBytes, 10),
	}
	if d.VendorName != "" || d.ProductName != "" {
		attrs["model"] = strings.TrimSpace(d.VendorName + " " + d.ProductName)
	}
	for k, v := range attrs {
		attrs[k] = eventValue(v)
	}
	return attrs
}

// maxEventValue bounds an event attribute value. The values come from
// sysfs, i.e. from the device (USB string descriptors, SCSI inquiry data):
// a hostile stick must not produce an event the server refuses (its limit
// is 4096 bytes of valid UTF-8 per value), which would hold up every event
// queued behind it.
const maxEventValue = 1024

// eventValue makes s valid UTF-8 and at most maxEventValue bytes, cut at
// a character boundary.
func eventValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxEventValue {
		return s
	}
	cut := maxEventValue - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// DeviceState is one governed device as Status and `media list` show it.
type DeviceState struct {
	Device Device
	Action Action // what the policy demands
	Rule   string
	Done   string // what the control did
	// Verified is the read-back: true when the device is in the state
	// the policy demands (always true for allow and in monitor mode).
	Verified bool
	Problem  string
}

// Devices returns the governed devices with their read-back state.
func (m *Media) Devices() []DeviceState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.devicesLocked()
}

func (m *Media) devicesLocked() []DeviceState {
	mounts, mountErr := m.mounts()
	var out []DeviceState
	for _, t := range m.devices {
		ds := DeviceState{Device: t.dev, Action: t.action, Rule: t.rule, Done: t.done, Verified: true}
		if m.enforce {
			ds.Problem = m.verify(t, mounts, mountErr)
			ds.Verified = ds.Problem == ""
		}
		out = append(out, ds)
	}
	slices.SortFunc(out, func(a, b DeviceState) int { return strings.Compare(a.Device.SysPath, b.Device.SysPath) })
	return out
}

// verify reads back the state of a device; "" means as demanded.
func (m *Media) verify(t *tracked, mounts []Mount, mountErr error) string {
	d := t.dev
	action := t.action
	if action == ActionBlock && d.USBInterface == "" {
		action = ActionReadOnly // nothing to deauthorise: read-only instead
	}
	switch action {
	case ActionReadOnly:
		if t.done == "no medium" || d.DevType == "usb_interface" {
			return ""
		}
		ro, err := getBlockRO(m.node(d))
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(m.o.SysRoot, d.SysPath)); serr == nil {
				return fmt.Sprintf("%s: device node %s missing, cannot set or verify read-only", d.Name, m.node(d))
			}
			return "" // gone; its remove uevent is on the way
		}
		if err != nil {
			return fmt.Sprintf("%s: cannot read the read-only flag: %v", d.Name, err)
		}
		if !ro {
			return d.Name + " is writable"
		}
		for _, n := range m.nodes(d) {
			if st, err := os.Stat(n); err == nil && st.Mode().Perm()&0o022 != 0 {
				return fmt.Sprintf("%s: %s is open to writers (mode %#o): SG_IO could write past the read-only flag", d.Name, n, st.Mode().Perm())
			}
		}
		if mountErr != nil {
			return mountErr.Error()
		}
		for _, mt := range mounts {
			if mt.Major == d.Major && mt.Minor == d.Minor && !mt.ReadOnly() {
				return d.Name + " is mounted read-write on " + mt.MountPoint
			}
		}
	case ActionBlock:
		if d.USBInterface == "" {
			return ""
		}
		v, err := os.ReadFile(filepath.Join(m.o.SysRoot, d.USBInterface, "authorized"))
		if errors.Is(err, os.ErrNotExist) {
			return "" // unplugged
		}
		if err != nil || strings.TrimSpace(string(v)) != "0" {
			return "USB interface " + path.Base(d.USBInterface) + " of " + d.Name + " is still authorised"
		}
	}
	return ""
}

// Back-off of the read-back's re-applying: the first time at once, then
// after 5 s, 10 s, 20 s… at most every 5 minutes.
const (
	reapplyFirstBackoff = 5 * time.Second
	reapplyMaxBackoff   = 5 * time.Minute
)

// reapplyLocked acts on what the read-back found: a governed device not in
// the state the policy demands (writable, mounted read-write, a pass-through
// node open to writers, an interface authorised again) is evaluated again,
// with back-off, and reported (reapplied). A device still not as demanded
// in a second status round in a row is reported as still_writable, which
// the server turns into an incident. It returns devs read back again.
func (m *Media) reapplyLocked(ctx context.Context, devs []DeviceState) []DeviceState {
	acted := false
	now := m.o.Now()
	for _, ds := range devs {
		t := m.devices[ds.Device.SysPath]
		if t == nil {
			continue
		}
		if ds.Verified {
			t.attempts, t.badRounds, t.retryAt = 0, 0, time.Time{}
			continue
		}
		t.badRounds++
		if t.badRounds == 2 {
			a := eventAttrs(t.dev, t.action, t.rule, true)
			a["problem"], a["rounds"] = eventValue(ds.Problem), strconv.Itoa(t.badRounds)
			m.emit(ctx, KindStillWritable, a)
		}
		if now.Before(t.retryAt) {
			continue
		}
		a := eventAttrs(t.dev, t.action, t.rule, true)
		a["problem"], a["attempt"] = eventValue(ds.Problem), strconv.Itoa(t.attempts+1)
		m.emit(ctx, KindReapplied, a)
		book := *t
		m.evaluateLocked(ctx, t.dev, time.Time{})
		if nt := m.devices[ds.Device.SysPath]; nt != nil {
			nt.attempts, nt.badRounds = book.attempts+1, book.badRounds
			nt.retryAt = now.Add(min(reapplyFirstBackoff<<min(book.attempts, 10), reapplyMaxBackoff))
		}
		acted = true
	}
	m.afterRoundLocked(ctx)
	if !acted {
		return devs
	}
	out := m.devicesLocked()
	for _, ds := range out { // fixed by acting again: not a bad round after all
		if t := m.devices[ds.Device.SysPath]; t != nil && ds.Verified {
			t.badRounds = 0
		}
	}
	return out
}

// Status reports ENFORCED only when every governed device reads back as the
// policy demands, the listener runs and the udev rule is intact.
func (m *Media) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	if !platformSupported {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE}
		control.SetDetail(st, "detail.media.unsupported-platform")
		return st, nil
	}
	rule := CheckUdevRule(m.o.UdevRule, m.o.UdevOverrideDirs)
	defer m.flush(ctx) // after the unlock below: events from re-applying
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := map[string]string{"udev_rule": rule.State, "udev_rule_path": m.o.UdevRule}
	if rule.SHA256 != "" {
		ev["udev_rule_sha256"] = rule.SHA256
	}
	if !m.configured {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_FAILED, Evidence: ev}
		control.SetDetail(st, "detail.media.not-started")
		return st, nil
	}
	if m.listenErr != nil || !m.running {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_FAILED, Evidence: ev}
		control.SetDetail(st, "detail.media.listener-down")
		if m.listenErr != nil {
			control.SetDetail(st, "detail.media.listener-error", m.listenErr.Error()) // the error stays English
		}
		return st, nil
	}
	devs := m.devicesLocked()
	if m.enforce {
		devs = m.reapplyLocked(ctx, devs)
	}
	counts := map[string]int{}
	var problems []control.Detail
	for i, ds := range devs {
		counts[ds.Done]++
		if !ds.Verified {
			problems = append(problems, control.D("detail.media.device-problem", ds.Problem)) // English: what verify found
		}
		if i < 32 {
			ev["device."+ds.Device.Name] = deviceLine(ds)
		}
	}
	ev["devices_governed"] = strconv.Itoa(len(devs))
	if m.flog != nil {
		if n, overflow := m.flog.takeDropped(); n > 0 {
			m.emit(ctx, KindFileEventsDropped, map[string]string{"count": strconv.FormatInt(n, 10), "overflow": strconv.FormatBool(overflow)})
		}
		ev["file_log.mounts"] = strconv.Itoa(m.flog.markedCount())
	}
	if m.flogErr != nil {
		ev["file_log.error"] = eventValue(m.flogErr.Error())
	}
	for name, mp := range m.systemSkipped {
		ev["not_governed."+name] = "holds the system (" + mp + ")"
	}
	for k, n := range counts {
		ev["devices."+strings.ReplaceAll(k, " ", "_")] = strconv.Itoa(n)
	}
	st := &mamoriv1.ControlStatus{Evidence: ev}
	switch {
	case len(problems) > 0:
		st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
		control.Join(problems).Apply(st)
	case m.settingsOK != nil:
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.SetDetail(st, "detail.media.invalid-settings", m.settingsOK.Error())
	case rule.State != UdevRuleOK:
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		rule.Message.Apply(st)
	case !m.enforce:
		st.State = mamoriv1.ControlState_CONTROL_STATE_MONITORING
		control.SetDetail(st, "detail.media.monitoring", strconv.Itoa(len(devs)), strconv.Itoa(counts["would read-only"]+counts["would block"]))
	default:
		st.State = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		control.SetDetail(st, "detail.media.enforced", strconv.Itoa(len(devs)))
	}
	return st, nil
}

func deviceLine(ds DeviceState) string {
	d := ds.Device
	s := fmt.Sprintf("%s %s %s:%s serial=%q %s", d.Class, d.Bus, d.Vendor, d.Product, d.Serial, ds.Done)
	if ds.Problem != "" {
		s += " PROBLEM: " + ds.Problem
	}
	return s
}
