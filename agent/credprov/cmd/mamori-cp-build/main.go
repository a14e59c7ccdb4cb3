// Command mamori-cp-build compiles mamori-cp.dll with mingw-w64 (`make
// credprov`): the compiler line lives in agent/credprov, shared with the
// tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/mamori-dev/mamori/agent/credprov"
)

func main() {
	src := flag.String("src", "agent/credprov", "directory of agent/credprov (sources in src/)")
	out := flag.String("o", credprov.DLLName, "output DLL")
	flag.Parse()
	if err := credprov.Build(context.Background(), credprov.CC, credprov.DLLArgs(*src, *out)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
