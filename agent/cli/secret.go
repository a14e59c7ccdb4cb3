package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// SecretReader reads secrets (a new PIN) line by line from a file, with
// echo off while it is a terminal (secret_linux.go, secret_windows.go).
// From a pipe it just reads lines, for scripted enrolment.
type SecretReader struct {
	f *os.File
	r *bufio.Reader
}

// NewSecretReader reads from f (os.Stdin).
func NewSecretReader(f *os.File) *SecretReader { return &SecretReader{f: f, r: bufio.NewReader(f)} }

// Read writes prompt to w and returns one line without its line ending.
// The caller clears the returned slice after use.
func (s *SecretReader) Read(w io.Writer, prompt string) ([]byte, error) {
	fmt.Fprint(w, prompt)
	restore, err := echoOff(s.f)
	if err == nil {
		defer func() { restore(); fmt.Fprintln(w) }()
	}
	line, err := s.r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		clear(line)
		return nil, fmt.Errorf("read the PIN: %w", err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
