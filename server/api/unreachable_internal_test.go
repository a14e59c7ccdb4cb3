package api

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

// TestStoreUnreachable: what the database says while it restarts or
// crashed becomes Unavailable (the agent retries); what it says about the
// request itself does not.
func TestStoreUnreachable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("ingest: begin: %w", sqlStateErr("57P01")), true}, // postmaster died: every session ends so
		{sqlStateErr("57P02"), true},
		{sqlStateErr("57P03"), true}, // starting up / recovering
		{sqlStateErr("08006"), true},
		{sqlStateErr("53300"), true},
		{sqlStateErr("57P04"), false}, // database dropped: not coming back
		{sqlStateErr("23505"), false}, // unique violation
		{sqlStateErr("42P01"), false}, // undefined table
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{errors.New("something else"), false},
	} {
		if got := storeUnreachable(tc.err); got != tc.want {
			t.Errorf("storeUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
