package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Process is a mamori-server the load tool starts, restarts and measures
// itself, so the server's CPU and memory are its own and not the load
// tool's.
type Process struct {
	// Bin and Args start the server; Addr is where it listens.
	Bin  string
	Args []string
	Addr string
	// Log receives the server's output (appended across restarts).
	Log *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts the server and waits until it accepts connections.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.Bin, p.Args...)
	if p.Log != nil {
		cmd.Stdout, cmd.Stderr = p.Log, p.Log
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Bin, err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start-up (see its log)", p.Bin)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections on %s after 60 s: %w", p.Bin, p.Addr, err)
		}
	}
}

// Stop sends sig and waits for the process to exit (SIGKILL after
// timeout).
func (p *Process) Stop(sig os.Signal, timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil }()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("server did not stop within %v of %v; killed", timeout, sig)
	}
}

// PID of the running server, 0 when none.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Sample reads the server's CPU time and memory from /proc.
func (p *Process) Sample() (Usage, error) { return ReadUsage(p.PID()) }

// Usage is a process's CPU time and memory at a moment.
type Usage struct {
	PID     int
	At      time.Time
	CPU     time.Duration // user + system
	RSS     int64         // VmRSS
	PeakRSS int64         // VmHWM
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

// ReadUsage reads /proc/PID/stat and /proc/PID/status (Linux only).
func ReadUsage(pid int) (Usage, error) {
	if pid <= 0 {
		return Usage{}, errors.New("no process")
	}
	u := Usage{PID: pid, At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// The command name is in parentheses and may hold spaces: split after it.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 { // fields 14 and 15 (utime, stime) are f[11], f[12]
		return u, errors.New("unexpected /proc stat format")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.CPU = time.Duration(ut+st) * time.Second / clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			u.RSS = kb << 10
		case "VmHWM":
			u.PeakRSS = kb << 10
		}
	}
	return u, nil
}

// SelfUsage is ReadUsage of this process.
func SelfUsage() (Usage, error) { return ReadUsage(os.Getpid()) }

func usage(a, b Usage) *ServerUsage {
	s := &ServerUsage{PID: b.PID, RSSBytes: b.RSS, PeakRSS: b.PeakRSS}
	if wall := b.At.Sub(a.At); wall > 0 && a.PID == b.PID {
		s.CPUPercent = 100 * float64(b.CPU-a.CPU) / float64(wall)
	}
	return s
}
