package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// runAs prepares dir for the server and returns how to run its commands.
// PostgreSQL refuses to run as root, so as root the commands run as the
// postgres user, which gets the data and socket directories; dir itself
// becomes 0755 so that it can reach them. Every command dies with the test
// process.
func runAs(dir, data, sock string) (func(*exec.Cmd), error) {
	attr := func(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
	if os.Geteuid() != 0 {
		return attr, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres user (apt-get install postgresql): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	for _, d := range []string{data, sock} {
		if err := os.Chown(d, uid, gid); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	return func(c *exec.Cmd) {
		attr(c)
		c.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		c.Dir = dir
	}, nil
}
