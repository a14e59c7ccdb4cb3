//go:build unix

package spool

import "golang.org/x/sys/unix"

// freeBytes is the room an unprivileged writer has on dir's file system.
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize) //nolint:unconvert // field types differ by OS
}
