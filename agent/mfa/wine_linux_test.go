package mfa_test

import (
	"testing"

	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs the journal's crash and restart tests as a Windows
// program under wine: the child verifier is ended with TerminateProcess
// (os.Process.Kill on Windows) right after its answer, and the journal
// goes through WriteFile and FlushFileBuffers.
func TestUnderWine(t *testing.T) {
	env := winetest.New(t)
	exe := winetest.BuildTest(t, ".")
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe,
		"^(TestCrashKeepsFailures|TestCrashKeepsStep|TestUncleanStopCharge|TestConcurrentAttempts|TestJournal|TestJournalUnknownRecords)$"))
}
