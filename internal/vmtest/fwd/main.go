// Command fwd joins its standard input and output to a TCP connection to
// the address it is given. A VM test gives it to qemu's user-mode network
// as a guestfwd command (`guestfwd=tcp:ADDR:PORT-cmd:fwd 127.0.0.1:PORT`):
// qemu runs it for every connection the guest opens to ADDR:PORT, so the
// guest reaches a server on the host's loopback, and nothing else. Test
// scaffolding, never shipped.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fwd HOST:PORT")
		os.Exit(2)
	}
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fwd:", err)
		os.Exit(1)
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, os.Stdin); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(os.Stdout, c); os.Stdout.Close(); done <- struct{}{} }()
	<-done
	<-done
}
