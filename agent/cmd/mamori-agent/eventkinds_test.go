package main

import (
	"testing"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/isolation"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/media"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/i18n"
)

// Every kind of event the agent sends has a name on the console, in
// Japanese and in English (internal/i18n messages_events.go).
func TestEventKindsNamed(t *testing.T) {
	kinds := []string{
		control.KindStateChanged,
		daemon.KindReportRefused, daemon.KindPolicyRejected, daemon.KindPolicyApplied,
		isolation.KindFinding, isolation.KindFindingCleared, isolation.KindRulesetApplied, isolation.KindRulesetReapplied,
		isolation.KindRulesetRemoved, isolation.KindForwardingOff, isolation.KindSessionsCut,
		loginmfa.KindWouldRefuse, loginmfa.KindDrift,
		media.KindSetReadOnly, media.KindRemountReadOnly, media.KindUSBBlocked, media.KindAllowed, media.KindWouldBlock,
		media.KindEnforcementError, media.KindExceptionUsed,
		mfa.KindSuccess, mfa.KindFailure, mfa.KindLockout, mfa.KindRecoveryUsed, mfa.KindTempCodeUsed, mfa.KindGraceLogin,
		mfa.KindUnlocked, mfa.KindPINEnrolled, mfa.KindPINRemoved,
		spool.KindEventsDropped, spool.KindSpoolDamaged,
	}
	for _, lang := range []i18n.Lang{i18n.Japanese, i18n.English} {
		p := i18n.NewPrinter(lang)
		for _, k := range kinds {
			if name, ok := p.EventKind(k); !ok || name == "" {
				t.Errorf("event kind %q has no %v name", k, lang)
			}
		}
	}
}
