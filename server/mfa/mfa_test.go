package mfa

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyFileAndSealing(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v; want 0600", fi.Mode(), err)
	}
	e, err := k.Enroll("tanaka", "op-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(dir) // the same key again
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.open("tanaka", e.Record.SealedSecret); err != nil {
		t.Fatalf("reloaded key cannot open: %v", err)
	}
	if _, err := k2.open("suzuki", e.Record.SealedSecret); err == nil {
		t.Fatal("a sealed secret opened under another user's name")
	}
	other, _ := LoadOrCreateKey(t.TempDir())
	if _, err := other.open("tanaka", e.Record.SealedSecret); err == nil {
		t.Fatal("a sealed secret opened under another server's key")
	}
	for _, bad := range []string{"", "Tanaka", "tanaka taro", "../x", "a23456789012345678901234567890123"} {
		if _, err := k.Enroll(bad, "op-1", time.Now()); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
}
