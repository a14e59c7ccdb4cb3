// Package e2e holds the end-to-end tests of the foundation: the real
// server (serve.Open, TLS, SQLite), the agent's own enrolment, daemon and
// durable spool, and mamorictl's code path, in one test binary; the agent
// also runs as a separate process that the test SIGKILLs mid-send. An
// exception (例外措置) approved over AdminService reaches the real media
// engine as the device's effective policy, allows the device and its use
// event is stored on the server (exception_linux_test.go).
//
// It has no non-test code, so it stays outside the package walls.
package e2e
