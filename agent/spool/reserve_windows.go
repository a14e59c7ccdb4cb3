package spool

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isNoSpaceOS recognises Windows' own words for a full volume.
func isNoSpaceOS(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL)
}
