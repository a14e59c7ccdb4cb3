//go:build !unix && !windows

package spool

// freeBytes is unknown here.
func freeBytes(string) int64 { return -1 }
