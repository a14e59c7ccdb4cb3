package regpolicy

// liveEnv must be 1 for the Windows tests that write HKLM: the wine
// harness sets it; a developer's `go test` on a real Windows machine does
// not, so it never changes that machine's removable-storage policy.
const liveEnv = "MAMORI_REGPOLICY_LIVE"
