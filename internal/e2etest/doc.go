// Package e2etest holds only tests that run the real server and the real
// agent core together in one process: an exception (例外措置) approved
// through AdminService reaches the agent as its effective policy, the
// real media engine allows the device because of it and records the use,
// and the use event is stored on the server.
package e2etest
