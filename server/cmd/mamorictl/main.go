// Command mamorictl is the helpdesk's tool for mamori: devices, compliance,
// enrolment tokens, revocation and policy. See server/ctl for everything it
// does; this file only wires the process to it.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/mamori-dev/mamori/server/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := ctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
