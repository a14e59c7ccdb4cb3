//go:build !windows

package spool

// isNoSpaceOS: ENOSPC and EDQUOT, checked by isNoSpace, are all there is.
func isNoSpaceOS(error) bool { return false }
