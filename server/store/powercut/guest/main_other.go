//go:build !linux

package main

import "fmt"

func main() { fmt.Println("the VM guest runs on Linux only") }
