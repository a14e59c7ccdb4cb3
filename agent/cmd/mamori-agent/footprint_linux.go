package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// releaseCode asks the kernel to drop this process's mappings of its own
// executable's read-only pages (program text, read-only data, the
// function tables): MADV_PAGEOUT (Linux 5.4) on clean file-backed pages
// only unmaps them — they stay in the page cache, and the next use maps
// them back without I/O. Start-up (package initialisation, enrolment, the
// first handshake) touches 14 of the 15 MiB of the binary once; a report
// round maps about 10 MiB of it back, because the kernel maps 64 KiB
// around every page fault of a file mapping ("fault-around") and a
// round's code is spread over the whole binary (measured: 155 of 233
// 64 KiB blocks resident after a round, 147 of them whole). Unmapped,
// those pages count in nobody's RSS and the kernel may reclaim them; left
// mapped, an agent that sleeps 59 s of every minute shows 15–20 MiB of
// RSS it does not use. What this changes is accounting and reclaim
// order, not the page cache: the pages are still cached while memory is
// plentiful. Remapping them costs the next round about 160 minor faults.
// Best effort: an older kernel's EINVAL is ignored.
func releaseCode() {
	for _, s := range codeSpans() {
		// Raw addresses of the binary's own mappings, not Go memory:
		// the system call, not unix.Madvise's []byte.
		unix.Syscall(unix.SYS_MADVISE, s[0], s[1]-s[0], unix.MADV_PAGEOUT) //nolint:errcheck // best effort
	}
}

// codeSpans are the executable's read-only mappings, read from
// /proc/self/maps once: a static binary's mappings do not move while it
// runs, so a round does not parse the file again.
var codeSpans = sync.OnceValue(func() [][2]uintptr {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	var spans [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe || strings.Contains(fs[1], "w") {
			continue
		}
		from, to, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(from, 16, 64)
		b, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil || b <= a {
			continue
		}
		spans = append(spans, [2]uintptr{uintptr(a), uintptr(b)})
	}
	return spans
})
