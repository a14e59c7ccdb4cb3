// Package admin is every operator action, written once: approve or revoke
// an exception, set the policy, revoke a device or move it to a group,
// create an enrolment token, import the asset ledger, and the MFA
// lifecycle (enrol, reset, unlock, temporary codes, seed import).
//
// The two front ends are thin adapters over it: server/api (AdminService,
// for mamorictl) and server/web (the console). Each action checks its
// input (the limits are in limits.go), writes through the small store
// interfaces below, and commits its audit record in the same transaction
// as its write (store.WithAudit), so an action is never done without its
// record nor recorded without being done. Refusals are *Error values
// whose Kind the adapters map in one place each: server/api's toStatus to
// a gRPC status, server/web's refusal to a page.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// Store is what the actions need; each action file names its part.
// store.Store satisfies it.
type Store interface {
	AuditLog
	ExceptionStore
	DeviceStore
	PolicyStore
	TokenStore
	LedgerStore
	MFAStore
	OperatorStore
	OperatorTokenStore
	IncidentStore
}

// AuditLog appends a record that has no write of its own to commit with.
type AuditLog interface {
	AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error)
	AuditHeadStore
}

// Operator is who does an action, as the front end authenticated them.
//
// The record of an action is the same whichever front end it came
// through. Until this package the console ended its own copies' records
// with " (console)" while its MFA actions (already shared with
// AdminService) and every AdminService record did not; the shared form
// is kept (tests pin it for MFA), and who did what through which front
// end is told by the operator's console.login records.
type Operator struct {
	ID string
	// Role decides the actions on other operators' API tokens (admin
	// only); the zero role manages only its own.
	Role auth.Role
	// Token is the API token the call came with, when it came with one
	// (server/api); zero from the console.
	Token store.OperatorToken
	// Officer: the operator's role is officer or admin (actions whose
	// role depends on the target check it: a privileged user's
	// temporary code).
	Officer bool
}

// Change says what an action changed that servers cache for agents.
type Change int

const (
	// PolicyChanged: the policy or the exceptions in force.
	PolicyChanged Change = 1 << iota
	// MFAChanged: MFA users, temporary codes or unlocks (the bundle).
	MFAChanged
)

// Deps are the service's collaborators.
type Deps struct {
	Store Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
	// MFAKey seals server-held TOTP secrets; nil refuses MFA enrolment and
	// seed import (ErrUnavailable).
	MFAKey *mfa.Key
	// Changed, when set, is told after an action changed (or may have
	// changed) what servers cache for agents, so the cache is dropped.
	Changed func(Change)
	// SignAudit signs the audit log's checkpoints (pki.CA.SignMessage);
	// nil writes none (checkpoint.go).
	SignAudit func(msg []byte) ([]byte, error)
	// OperatorSeeds seals operators' console TOTP seeds; nil refuses to
	// create operators or reset their TOTP (ErrUnavailable).
	OperatorSeeds *auth.SeedKey
	// CheckpointFile keeps what the last signed checkpoint covers
	// (checkpoint.go); empty keeps it in memory only.
	CheckpointFile string
}

// Service runs the operator actions.
type Service struct {
	st      Store
	now     func() time.Time
	log     *slog.Logger
	mfaKey  *mfa.Key
	changed func(Change)

	signAudit func(msg []byte) ([]byte, error)
	ckFile    string
	ck        checkpoints
	wit       witnesses
	seeds     *auth.SeedKey
}

// New checks d and returns the service.
func New(d Deps) (*Service, error) {
	if d.Store == nil {
		return nil, errors.New("admin: a store is required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Changed == nil {
		d.Changed = func(Change) {}
	}
	return &Service{st: d.Store, now: d.Now, log: d.Log, mfaKey: d.MFAKey, changed: d.Changed, signAudit: d.SignAudit, ckFile: d.CheckpointFile, seeds: d.OperatorSeeds}, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// audited runs do with the audit record attached to its context: the store
// commits the record in the same transaction as do's write. What only the
// transaction knows is added from inside it (store.AmendAudit,
// store.AuditField). If do wrote nothing in a transaction of its own, the
// record is appended after it.
func (s *Service) audited(ctx context.Context, op Operator, action, target, detail string, do func(context.Context) error) error {
	return s.Audited(ctx, audit.Record{Actor: op.ID, Action: action, Target: target, Detail: detail}, do)
}

// Audited runs do with r (At filled from the clock when zero) attached to
// its context, so the store commits r in the same transaction as do's
// write; if do wrote nothing in a transaction of its own, r is appended
// after it. A nil do appends r on its own: for what has no write to commit
// with (a sign-in, a refusal, an export). The front ends use it for what
// they record beyond the actions of this package (sign-in, sessions,
// enrolment); they never append to the audit log themselves.
func (s *Service) Audited(ctx context.Context, r audit.Record, do func(context.Context) error) error {
	if r.At.IsZero() {
		r.At = s.now()
	}
	if do == nil {
		return s.append(ctx, r)
	}
	actx, p := store.WithAudit(ctx, r)
	if err := do(actx); err != nil {
		return err
	}
	if _, ok := p.Taken(); ok {
		return nil
	}
	return s.append(ctx, p.Record())
}

func (s *Service) append(ctx context.Context, r audit.Record) error {
	if _, err := s.st.AppendAudit(ctx, r); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "action", r.Action, "target", r.Target, "error", err)
		return fmt.Errorf("%s done but not recorded in the audit log: %w", r.Action, err)
	}
	return nil
}
