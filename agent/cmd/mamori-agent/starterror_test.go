package main

import (
	"errors"
	"strings"
	"testing"
)

// A service that cannot start says why in both languages (the Event Log
// text on Windows).
func TestStartErrorText(t *testing.T) {
	got := startErrorText(errors.New(`server "x:y:z": bad address`))
	for _, want := range []string{`mamori-agent could not start: server "x:y:z": bad address`, `mamori-agent を開始できませんでした: server "x:y:z": bad address`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q does not say %q", got, want)
		}
	}
}
