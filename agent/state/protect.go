package state

// Protect creates the state directory if needed and narrows who may open
// it, before the agent writes a device key into it.
//
// On Windows the directory is C:\ProgramData\mamori, which starts with
// ProgramData's inherited ACL: Users may read, and CREATOR OWNER gets full
// control of what a user creates. The device key, its certificate, the
// sealed MFA bundle and the spool must not be readable by a local user.
// Protect sets a protected DACL — full control for SYSTEM and
// Administrators, inherited by every file and directory created inside,
// nothing inherited from ProgramData — and resets every file and
// directory already inside (an upgrade from an install that predates
// this) to the same ACEs, dropping any explicit entry they had.
//
// On Linux the directory is created 0700 and the key written 0600, which
// is the protection; Protect only creates the directory.
//
// The service calls it at start (run) and at enrolment; an error there is
// fatal: an agent that cannot protect its key must not write one.
func Protect(path string) error { return protect(path) }

// StateDirSDDL is the DACL Protect gives the state directory: protected
// (P), full control (FA) for LocalSystem (SY) and Administrators (BA),
// inherited by files (OI) and directories (CI).
const StateDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// stateFileSDDL is what an existing file inside gets: the same two
// entries, not inheritable (a file has no children).
const stateFileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
