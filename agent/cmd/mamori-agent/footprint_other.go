//go:build !linux

package main

// releaseCode: Windows trims a service's working set on its own when
// memory is needed (and SetProcessWorkingSetSize could force it); nothing
// is done here yet (docs/performance.md "The idle agent").
func releaseCode() {}
