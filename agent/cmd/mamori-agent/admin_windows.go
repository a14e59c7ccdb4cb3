package main

import "golang.org/x/sys/windows"

func isAdmin() bool { return windows.GetCurrentProcessToken().IsElevated() }

// envFile: the MSI keeps its settings in the registry, not a file.
func envFile() string { return "" }

// ownUser: the pipe serves SYSTEM (LogonUI) only.
func ownUser() func(string) (uint32, bool) { return nil }
