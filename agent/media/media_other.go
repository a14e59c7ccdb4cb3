//go:build !linux

package media

import (
	"errors"
	"os"
)

// The media control is Linux-only for now (Windows is its own issue): the
// control reports NOT_APPLICABLE and these return errors.ErrUnsupported.

const platformSupported = false

func openUevents() (ueventSource, error) { return nil, errors.ErrUnsupported }
func setBlockRO(string, bool) error      { return errors.ErrUnsupported }
func getBlockRO(string) (bool, error)    { return false, errors.ErrUnsupported }
func remountRO(string) error             { return errors.ErrUnsupported }
func dropWriteBits(string) error         { return errors.ErrUnsupported }
func writeAuthorized(string, bool) error { return errors.ErrUnsupported }
func makeBlockRO(string) (bool, error)   { return false, errors.ErrUnsupported }
func restoreWriteBits(string) error      { return errors.ErrUnsupported }
func scsiOffline(string, string) error   { return errors.ErrUnsupported }
func shutdownFS(string) (bool, error)    { return false, errors.ErrUnsupported }
func detachMount(string) error           { return errors.ErrUnsupported }
func replugUSB(string) error             { return errors.ErrUnsupported }
func replugSCSI(string, string) error    { return errors.ErrUnsupported }
func writersOn(string, uint64) []string  { return nil }
func mkdev(uint32, uint32) uint64        { return 0 }

func readAttr(p string) ([]byte, error) { return os.ReadFile(p) }

type fileLog struct{}

func openFileLog(int64, func(string, map[string]string), func()) (*fileLog, error) {
	return nil, errors.ErrUnsupported
}
func (*fileLog) sync(map[uint64]markedDevice, []Mount) error { return errors.ErrUnsupported }
func (*fileLog) takeDropped() (int64, bool)                  { return 0, false }
func (*fileLog) markedCount() int                            { return 0 }
func (*fileLog) close()                                      {}
