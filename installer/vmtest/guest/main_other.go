//go:build !linux

// Command guest runs only inside the Linux VM of installer/vmtest's
// TestAgentUnderRealUnit.
package main

func main() {}
