// Package hatest holds only tests: mamori-server run as separate processes
// (the test binary re-executed through serve.Open, exactly what
// cmd/mamori-server runs) and killed with SIGKILL, two servers sharing one
// real PostgreSQL with agents failing over between them, PostgreSQL
// restarted under load, and terminal clocks jumping. Every test counts the
// events in the store afterwards: nothing acknowledged may be missing, and
// nothing may be stored twice.
package hatest
