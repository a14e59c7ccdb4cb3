// Package cli parses mamori-agent's command line. What the command line
// says to people lives in internal/i18n (IDs "agent.…"); the IDs are named
// here so main cannot mistype one.
package cli

import "github.com/mamori-dev/mamori/internal/i18n"

// Message IDs.
const (
	MsgUsage          i18n.ID = "agent.usage"
	MsgUnknownCommand i18n.ID = "agent.err.unknown-command"
	MsgBadFlags       i18n.ID = "agent.err.flags"
	MsgConfig         i18n.ID = "agent.err.config"
	MsgStartFailed    i18n.ID = "agent.err.start"
	// isolation-boot (agent/isolation.Boot)
	MsgIsolationBootDone   i18n.ID = "agent.isolation-boot.done"
	MsgIsolationBootNone   i18n.ID = "agent.isolation-boot.none"
	MsgIsolationBootFailed i18n.ID = "agent.err.isolation-boot"
	MsgEnrolled            i18n.ID = "agent.enrolled"
	MsgEnrollFailed        i18n.ID = "agent.err.enroll"
	MsgStatus              i18n.ID = "agent.status"
	MsgStatusRunning       i18n.ID = "agent.status.running"
	MsgStatusStopped       i18n.ID = "agent.status.stopped"
	MsgStatusUnknown       i18n.ID = "agent.status.unknown"
	MsgNotInstalled        i18n.ID = "agent.status.not-installed"
	MsgServiceDone         i18n.ID = "agent.service.done"
	MsgServiceFailed       i18n.ID = "agent.err.service"
	MsgRunFailed           i18n.ID = "agent.err.run"
	MsgEnrolledAs          i18n.ID = "agent.status.device"
	MsgNotEnrolled         i18n.ID = "agent.status.not-enrolled"
	// mfa pin-enroll / pin-remove (agent/mfa/tpmpin.go)
	MsgPINPrompt    i18n.ID = "agent.mfa.pin-prompt"
	MsgPINAgain     i18n.ID = "agent.mfa.pin-again"
	MsgPINMismatch  i18n.ID = "agent.mfa.pin-mismatch"
	MsgPINEnrolled  i18n.ID = "agent.mfa.pin-enrolled"
	MsgPINRemoved   i18n.ID = "agent.mfa.pin-removed"
	MsgMFAFailed    i18n.ID = "agent.err.mfa"
	MsgCertValid    i18n.ID = "agent.status.cert"
	MsgCertRenewDue i18n.ID = "agent.status.cert-renew-due"
	MsgCertExpired  i18n.ID = "agent.status.cert-expired"
)
