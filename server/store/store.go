// Package store is the contract between mamori-server and its database.
//
// Two backends implement it: server/store/sqlite (embedded default) and
// server/store/postgres (large fleets, several servers on one database).
// Both pass the one conformance suite in server/store/storetest.
//
// Rules every backend keeps:
//   - Every write that a method reports as done is durable (committed with
//     fsync; SQLite in WAL mode with synchronous=FULL).
//   - Times are passed in by the caller (the server owns the clock), stored
//     with microsecond precision in UTC.
//   - An event is stored at most once per (device, event ID).
//   - The store never evaluates policy; it is handed verdicts.
package store

import (
	"context"
	"errors"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/audit"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a version check failed or a unique value is taken.
	ErrConflict = errors.New("conflict")
	// ErrAmbiguous: a hostname names more than one device.
	ErrAmbiguous = errors.New("more than one device has that name")

	// Enrolment refusals. They are distinct so the server can log which,
	// but the agent is told only "token refused".
	ErrTokenUnknown = errors.New("enrolment token unknown")
	ErrTokenExpired = errors.New("enrolment token expired")
	ErrTokenUsedUp  = errors.New("enrolment token used up")

	// Report refusals.
	ErrDeviceRevoked = errors.New("device revoked")
	// ErrCertSuperseded: the certificate is not the device's current one
	// (the device re-enrolled since).
	ErrCertSuperseded = errors.New("device certificate superseded by a newer enrolment")
	// ErrWrongDevice: the report's facts carry another machine's ID than
	// the one the certificate's device enrolled with.
	ErrWrongDevice = errors.New("report names another machine than the enrolled one")
)

// Compliance verdicts as stored. OFFLINE is never stored: it is derived at
// read time from LastSeen and the policy's max report age, so a silent
// device turns OFFLINE without anyone writing.
const (
	VerdictNeverReported = "NEVER_REPORTED"
	VerdictCompliant     = "COMPLIANT"
	VerdictNoncompliant  = "NONCOMPLIANT"
	VerdictRevoked       = "REVOKED"
)

// Token is an enrolment token as stored: only its hash.
type Token struct {
	ID        string
	Hash      []byte // SHA-256 of the secret token
	CreatedAt time.Time
	ExpiresAt time.Time
	Uses      int // how many enrolments it allows in all
	Used      int
	Note      string
	CreatedBy string // operator ID
	// Group is the device group (所属) a device enrolled with this token
	// joins; '' leaves a re-enrolled device's group as it was.
	Group string
}

// EnrollParams is one enrolment attempt.
type EnrollParams struct {
	TokenHash []byte
	Now       time.Time
	Facts     *mamoriv1.DeviceFacts // MachineId is the re-enrolment key
	// NewDeviceID is used when no device has this EK or machine ID yet.
	NewDeviceID string
	// KeyHash is SHA-256 of the CSR's SubjectPublicKeyInfo. A machine that
	// already spent a use of this token with this key (its first answer
	// was lost and it retries) is issued a certificate again without
	// counting another use, even when the token has no use left. Empty
	// disables that: every enrolment counts.
	KeyHash []byte
	// EKFingerprint is set when the request proved possession of this TPM
	// endorsement key (server/attest: the credential challenge was
	// answered): the device with this EK is the same device, whatever its
	// machine ID. Empty for a software key.
	EKFingerprint string
	// KeyAttested: the EK is verified (its certificate chains to a
	// configured vendor root, or an officer approved it), so the device
	// key is attested to be in a genuine TPM. Possession of an EK alone
	// (a software TPM) proves the same device, not a genuine TPM.
	KeyAttested bool
	// ProvenDeviceID and ProvenSerial: the request carried a signature by
	// the key of the certificate with this serial, issued by this server's
	// CA to this device (server/api checked both). The device is
	// re-enrolled when that certificate is its current one or the one it
	// last renewed from; a claimed machine ID alone never names an
	// existing device (it makes a new record flagged CloneOf).
	ProvenDeviceID, ProvenSerial string
	// Sign issues the certificate for the chosen device ID. It runs inside
	// the transaction, after the token is checked and before it is counted;
	// an error rolls everything back.
	Sign func(deviceID string) (certDER []byte, serial string, err error)
}

// EnrollResult is what Enroll did.
type EnrollResult struct {
	Device  Device
	CertDER []byte
	// Reenrolled is true when an existing device record was kept.
	Reenrolled bool
	// Repeated is true when this was a retry of an enrolment this machine
	// already made with this token and key: no use was counted.
	Repeated bool
	// By says how an existing record was recognised: "key" (signed with
	// its current key), "ek" (the same proven TPM EK) or "retry" (the same
	// token, machine ID and new key as an enrolment just made); "" for a
	// new record.
	By string
	// CloneOf is set when the request named the machine ID of this
	// existing device without proving it is that device: the new record
	// is flagged as a possible clone.
	CloneOf string
}

// ErrNotClone: ApproveClone on a device that is not flagged as a
// possible clone.
var ErrNotClone = errors.New("device is not flagged as a possible clone")

// EnrollFailure is one enrolment refused for its token.
type EnrollFailure struct {
	ID     int64
	Source string // the caller's address (IPv6 by /64)
	At     time.Time
	Reason string // "unknown" or "expired"
}

// ApprovedEK is a TPM endorsement key an officer approved.
type ApprovedEK struct {
	Fingerprint string
	ApprovedBy  string
	ApprovedAt  time.Time
	Note        string
}

// RenewParams is one certificate renewal: a device proves itself with its
// current certificate and is issued a new one for the same key.
type RenewParams struct {
	DeviceID string
	// PresentedSerial is the serial of the certificate the call came
	// with. It must be the device's current certificate, or the one it
	// renewed from last (an agent that did not get or save the answer).
	PresentedSerial string
	Now             time.Time
	// Sign issues the new certificate. It runs inside the transaction,
	// after the checks; an error rolls everything back.
	Sign func() (certDER []byte, serial string, err error)
}

// RenewResult is what Renew did.
type RenewResult struct {
	Device  Device
	CertDER []byte
}

// Device is the server's record of one terminal.
type Device struct {
	ID         string
	Facts      *mamoriv1.DeviceFacts
	EnrolledAt time.Time
	CertSerial string // hex serial of the current certificate
	// LastSeen is zero until the first report.
	LastSeen time.Time
	// Verdict is one of the Verdict constants, as of the last report.
	Verdict string
	Reasons []string
	// FailingSince is set while Verdict is NONCOMPLIANT.
	FailingSince  time.Time
	PolicyVersion int64
	// Controls is the latest status of each control with the time it
	// entered its current state, ordered by control name.
	Controls      []*mamoriv1.ControlRecord
	RevokedAt     time.Time
	RevokedReason string
	// EKFingerprint is the TPM endorsement key of the device's last
	// attested enrolment; empty if it never had one.
	EKFingerprint string
	// KeyAttested: the current certificate's key was attested to be in
	// that TPM.
	KeyAttested bool
	// Group is the device group (所属 / department); '' is none.
	Group string
	// CloneOf: this record was made by an enrolment that claimed the
	// machine ID of device CloneOf without proof; it awaits an officer's
	// review (ApproveClone, or revoke it). '' for every other device.
	CloneOf string
	// StateDigest is the agent's digest of the state stored (issue #20);
	// '' when the last report came from an older agent or none came.
	StateDigest string
	// VerdictPolicy is the digest of the effective policy Verdict was
	// evaluated under; '' when unknown.
	VerdictPolicy string
}

// ReportInput is one report, already authenticated and evaluated.
type ReportInput struct {
	DeviceID   string
	CertSerial string // must equal the device's current serial
	ReceivedAt time.Time
	Facts      *mamoriv1.DeviceFacts // may be nil: keep the stored facts
	Statuses   []*mamoriv1.ControlStatus
	Events     []*mamoriv1.Event
	// PolicyVersion is the policy the agent enforces.
	PolicyVersion int64
	// Verdict and Reasons are the server's evaluation of Statuses.
	Verdict string
	Reasons []string
	// KeepVerdict: the report carried no control status, so it says
	// nothing about compliance: the stored verdict, reasons, failing-since
	// time and policy version stay (a device that never reported gets
	// Verdict all the same).
	KeepVerdict bool
	// Encoding is optional: the encodings Encode made in advance.
	Encoding *Encoding

	// Differential reports (issue #20). StateDigest is the agent's digest
	// of its whole state after this report ("" from older agents: it
	// clears the stored one). BaseDigest, when set, makes the report a
	// delta: it applies only when the stored state digest equals it;
	// otherwise the report's events and facts are stored, its statuses
	// and verdict are not, and the result says NeedFull. PolicyDigest is
	// the digest of the effective policy Verdict was evaluated under,
	// stored with the verdict (the server's no-change fast path checks
	// it is still the device's policy).
	StateDigest, BaseDigest, PolicyDigest string
}

// Touch is one steady-state ("no change") report whose only effect is
// last_seen: ingest.Heartbeats batches them (TouchDevices).
type Touch struct {
	DeviceID   string
	CertSerial string
	// StateDigest is the state the report confirmed; the touch applies
	// only while the device still holds it.
	StateDigest string
	At          time.Time
}

// ReportResult is the outcome of one report in a batch.
type ReportResult struct {
	// Err is nil, ErrNotFound, ErrDeviceRevoked, ErrCertSuperseded or
	// ErrWrongDevice for this report alone; a failed transaction fails
	// every report in it.
	Err error
	// NewEvents counts events stored now; duplicates are not counted but
	// are acknowledged all the same.
	NewEvents int
	// Changes lists the controls whose state changed with this report.
	Changes []string
	// NeedFull: the report was a delta (BaseDigest) against a state the
	// store does not hold; its statuses were not applied.
	NeedFull bool
}

// DeviceFilter selects devices for ListDevices and counts.
type DeviceFilter struct {
	// Compliance filters by the derived state; UNSPECIFIED means all.
	Compliance mamoriv1.Compliance
	// OfflineBefore: a device last seen before this is OFFLINE.
	OfflineBefore time.Time
	// GroupOfflineBefore replaces OfflineBefore for the devices of the
	// groups it names (groups whose policy has a max report age of its
	// own); nil: OfflineBefore for all.
	GroupOfflineBefore map[string]time.Time
	// AfterID is the keyset cursor: only IDs greater than this.
	AfterID string
	// Group, when set, selects the devices of that group only.
	Group string
	Limit int
	// WithoutControls leaves Device.Controls empty: the control records
	// are most of a device row's decoding, and a caller that needs only
	// facts and compliance (the asset ledger over the whole fleet) saves it.
	WithoutControls bool
}

// DeviceSort orders the device list.
type DeviceSort string

// The device list's orders; every one ends with the device ID, so a page
// is stable.
const (
	SortHostname     DeviceSort = "hostname"
	SortLastSeen     DeviceSort = "last_seen"
	SortFailingSince DeviceSort = "failing_since"
	SortGroup        DeviceSort = "group" // 所属, then host name
)

// DeviceQuery selects one page of the device list (端末一覧).
type DeviceQuery struct {
	// Filter: Compliance, the OFFLINE cut-off and Group as for
	// ListDevices; AfterID and Limit are ignored (Offset, Limit below).
	Filter DeviceFilter
	// NoGroup selects the devices in no group (Filter.Group must be '').
	NoGroup bool
	// Control selects the devices whose current state of this control
	// is DEGRADED or FAILED (as the watcher last derived it).
	Control string
	// OS and AgentVersion select devices whose facts name exactly these.
	OS, AgentVersion string
	Sort             DeviceSort // '' is SortHostname
	Desc             bool
	Offset, Limit    int
	// After and Before page by keyset: the page of Limit devices that
	// follow (precede) the device with this ID in the order, returned in
	// the order; at most one, and no Offset with either. An unknown ID is
	// ErrNotFound. A page costs the same wherever it is in the list.
	After, Before string
}

// DeviceFacets are the values the device list's filters offer.
type DeviceFacets struct {
	Groups, OSes, AgentVersions, Controls []string
}

// FleetCounts are the fleet summary counts. Every device is in exactly one.
type FleetCounts struct {
	Total, Compliant, Noncompliant, Offline, NeverReported, Revoked int64
}

// OfflineCut says when a device is OFFLINE: last seen before Default, or,
// for a device of a group named in Groups, before that group's cut-off.
// The zero value makes nothing OFFLINE.
type OfflineCut struct {
	Default time.Time
	Groups  map[string]time.Time
}

// Filter is f with c as its OFFLINE cut-off.
func (c OfflineCut) Filter(f DeviceFilter) DeviceFilter {
	f.OfflineBefore, f.GroupOfflineBefore = c.Default, c.Groups
	return f
}

// GroupCounts are the fleet counts of one device group.
type GroupCounts struct {
	Group string // '' for devices in no group
	FleetCounts
}

// StoredEvent is an event as kept, with its insertion sequence.
type StoredEvent struct {
	Seq        int64
	DeviceID   string
	Event      *mamoriv1.Event
	ReceivedAt time.Time
}

// EventFilter selects events, newest first.
type EventFilter struct {
	DeviceID  string // empty: all devices
	BeforeSeq int64  // 0: from the newest
	Limit     int
}

// HistoryEntry is one change of a control's state on a device.
type HistoryEntry struct {
	DeviceID string
	Control  string
	From, To mamoriv1.ControlState
	Detail   string // English
	// DetailMsg is Detail as the agent's catalogue message: only its
	// detail_id, detail_args and detail_parts are set. nil when the agent
	// sent none (or it was too large to keep; codec.DetailMsg).
	DetailMsg *mamoriv1.ControlStatus
	At        time.Time
}

// Operator is a person or tool that uses AdminService.
type Operator struct {
	ID         string
	Name       string
	Role       string // "helpdesk", "officer", "admin"
	TokenHash  []byte // SHA-256 of the API token
	CreatedAt  time.Time
	DisabledAt time.Time
	// TokenExpiresAt ends the API token; zero: a token from before
	// expiry existed, refused until the server gives it one at start.
	// An operator without a token (console only) has a random hash that
	// no token matches and an expiry at its creation.
	TokenExpiresAt time.Time
	// Token, when set, is the operator's first API token, stored in the
	// same transaction (an opt-in token, or the first admin's bootstrap
	// token). TokenHash and TokenExpiresAt above are the column of the
	// one token operators had before tokens were named: they no longer
	// authenticate (an empty TokenHash stores a random one).
	Token *OperatorToken
}

// OperatorToken is a named operator API token (issue 14 item 7). Only its
// SHA-256 is stored; the token is shown once.
type OperatorToken struct {
	ID         string
	OperatorID string
	Name       string
	Hash       []byte
	CreatedBy  string // the operator (ID) or "system"/"local-admin"
	CreatedAt  time.Time
	// ExpiresAt zero: a token from before expiry existed, refused until
	// the server gives it one at start.
	ExpiresAt  time.Time
	RevokedAt  time.Time
	RevokedBy  string
	LastUsedAt time.Time
	// SingleUse: the first admin's bootstrap token, ended by its first
	// successful use.
	SingleUse bool
}

// OperatorTokenInfo is a token as listed: never its hash.
type OperatorTokenInfo struct {
	OperatorToken
	OperatorName string
}

// PolicyChange is one version of the policy with who set it and why.
type PolicyChange struct {
	Policy *mamoriv1.Policy
	Actor  string
	Reason string
	At     time.Time
}

// AuditRecord is one entry in the append-only, hash-chained audit log;
// the type lives in server/audit with its hash and verifier. The store
// fills Seq, PrevHash and Hash.
type AuditRecord = audit.Record

// Store is everything the server needs from a database. Consumers take the
// smaller interfaces below; the full one is for wiring and the conformance
// suite.
type Store interface {
	Enrollment
	Ingest
	Devices
	Events
	Operators
	Policies
	Audit
	Console
	MFA
	Exceptions // exceptions (例外措置) and the asset ledger, exceptions.go
	Evidence
	Close() error
}

// Enrollment is what AgentService.Enroll and token creation need.
type Enrollment interface {
	CreateToken(ctx context.Context, t Token) error
	// Enroll checks the token (known, not expired, uses left), finds the
	// device by EK fingerprint, else by machine ID, or creates it, signs, counts one use of the
	// token, and stores the new certificate serial, all in one transaction.
	Enroll(ctx context.Context, p EnrollParams) (EnrollResult, error)
	// Renew checks that the device exists (ErrNotFound), is not revoked
	// (ErrDeviceRevoked) and presents its current certificate or the one
	// it last renewed from (ErrCertSuperseded), signs, and makes the new
	// certificate current, all in one transaction. The presented
	// certificate stays accepted (same key) until it expires, so a renewal
	// whose answer never arrived leaves the agent a working certificate.
	Renew(ctx context.Context, p RenewParams) (RenewResult, error)
	// CheckToken reads a token without changing it: ErrTokenUnknown or
	// ErrTokenExpired, else nil (uses are counted by Enroll, which lets a
	// retry through on a used-up token). Admission runs it before the
	// per-token limit, so only a valid token spends that budget.
	CheckToken(ctx context.Context, hash []byte, now time.Time) error
	// RecordEnrollFailure stores one enrolment refused for its token.
	RecordEnrollFailure(ctx context.Context, f EnrollFailure) error
	// ApproveClone confirms that device id, flagged as a possible clone
	// of another (CloneOf), is that device re-enrolled: the flag is
	// cleared, the record takes over the other's machine ID (and group
	// when it has none), and the other is revoked with a reason naming
	// id (a revoked one stays revoked as it was). ErrNotClone when id is
	// not flagged. Returns the approved device and the one it replaced.
	ApproveClone(ctx context.Context, id string, at time.Time) (approved, replaced Device, err error)
	// ApproveEK adds an EK fingerprint to the approved list (idempotent:
	// an approved EK keeps its first record); EKApproved looks one up.
	ApproveEK(ctx context.Context, e ApprovedEK) (added bool, err error)
	EKApproved(ctx context.Context, fingerprint string) (bool, error)
	ListApprovedEKs(ctx context.Context) ([]ApprovedEK, error)
}

// Ingest stores reports. One call is one transaction (group commit): every
// result is durable when IngestReports returns nil.
type Ingest interface {
	IngestReports(ctx context.Context, in []ReportInput) ([]ReportResult, error)
	// TouchDevices moves last_seen forward for steady-state reports, in
	// one transaction, for the devices that still have the touch's
	// certificate (current or previous), state digest and no revocation;
	// it returns the IDs of the touches that did not apply (stale: the
	// server must not take that device's next report on the fast path).
	// A last_seen already later than the touch stays.
	TouchDevices(ctx context.Context, ts []Touch) (stale []string, err error)
	// DeviceCredential returns what the server checks on every agent call.
	DeviceCredential(ctx context.Context, deviceID string) (serial string, revokedAt time.Time, err error)
}

// Devices reads and changes device records.
type Devices interface {
	GetDevice(ctx context.Context, id string) (Device, error)
	// FindDevice looks up by ID, then by hostname (ErrAmbiguous when more
	// than one device has it).
	FindDevice(ctx context.Context, idOrHostname string) (Device, error)
	ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error)
	CountFleet(ctx context.Context, cut OfflineCut) (FleetCounts, error)
	// CountFleetByGroup is CountFleet per device group, ordered by group.
	CountFleetByGroup(ctx context.Context, cut OfflineCut) ([]GroupCounts, error)
	// ListDevicePage returns one page of the device list and how many
	// devices match q in all.
	ListDevicePage(ctx context.Context, q DeviceQuery) ([]Device, int64, error)
	// DeviceFacets lists the groups, OSes, agent versions and controls
	// the fleet has, each sorted.
	DeviceFacets(ctx context.Context) (DeviceFacets, error)
	// SetDeviceGroup moves a device to a group ('' for none).
	SetDeviceGroup(ctx context.Context, id, group string) (Device, error)
	RevokeDevice(ctx context.Context, id, reason string, at time.Time) (Device, error)
	ControlHistory(ctx context.Context, deviceID string, limit int) ([]HistoryEntry, error)
}

// Events reads stored events.
type Events interface {
	ListEvents(ctx context.Context, f EventFilter) ([]StoredEvent, error)
	CountEvents(ctx context.Context, deviceID string) (int64, error)
	// ListFileLog returns the file log's records (events of the kinds in
	// FileLogKinds: files written to removable media under an exception,
	// and the records the agent lost) received in [f.From, f.To), in the
	// order received (or newest first), after f.After.
	ListFileLog(ctx context.Context, f FileLogFilter) ([]StoredEvent, error)
}

// FileLogKinds are the event kinds of agent/media's file log (its
// KindFileWritten and KindFileEventsDropped).
var FileLogKinds = []string{"media_file_written", "media_file_events_dropped"}

// FileLogFilter selects file log records by when the server received
// them: a terminal's clock is its own claim, the receipt time is the
// server's. A record that was spooled on an offline terminal is in the
// period it reached the server, with the time it was written beside it.
type FileLogFilter struct {
	From, To time.Time
	Group    string // "" for every device
	DeviceID string // "" for every device
	// Newest lists newest first (the device page); otherwise in the order
	// received (the evidence report).
	Newest bool
	// After is the last record of the previous page (zero: from the start).
	After FileLogCursor
	Limit int
}

// FileLogCursor is where a page of file log records ended.
type FileLogCursor struct {
	ReceivedAt time.Time
	Seq        int64
}

// Operators manages operator credentials.
type Operators interface {
	CreateOperator(ctx context.Context, o Operator) error
	// OperatorByTokenHash finds an API token (revoked and expired ones
	// too: the caller judges) and its operator; ErrNotFound.
	OperatorByTokenHash(ctx context.Context, hash []byte) (Operator, OperatorToken, error)
	// ExpireLegacyTokens sets at as the expiry of every token without one
	// and returns their operators' IDs.
	ExpireLegacyTokens(ctx context.Context, at time.Time) ([]string, error)
	// CreateOperatorToken stores t; a name the operator already has on a
	// token that is not revoked, or a taken hash, is ErrConflict; an
	// unknown operator ErrNotFound.
	CreateOperatorToken(ctx context.Context, t OperatorToken) error
	// ListOperatorTokens lists the tokens of operatorID ("" for all),
	// revoked ones included, by operator name then token name.
	ListOperatorTokens(ctx context.Context, operatorID string) ([]OperatorTokenInfo, error)
	// RevokeOperatorToken revokes operatorID's token called name (the one
	// not yet revoked) and returns it; ErrNotFound.
	RevokeOperatorToken(ctx context.Context, operatorID, name, by string, at time.Time) (OperatorToken, error)
	// UseOperatorToken records a successful use of token id at at; a
	// single-use token is revoked by it. ErrNotFound when the token was
	// revoked meanwhile (a second use of a single-use token racing the
	// first).
	UseOperatorToken(ctx context.Context, id string, at time.Time) error
	CountOperators(ctx context.Context) (int, error)
}

// Policies keeps the versioned policy.
type Policies interface {
	// CurrentPolicy returns ErrNotFound before the first SetPolicy.
	CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error)
	// SetPolicy stores c.Policy as version expectedVersion+1; it returns
	// ErrConflict when the current version is not expectedVersion (0 means
	// no policy yet).
	SetPolicy(ctx context.Context, c PolicyChange, expectedVersion int64) (*mamoriv1.Policy, error)
	PolicyHistory(ctx context.Context, limit int) ([]PolicyChange, error)
}

// Audit is the append-only, hash-chained audit log.
type Audit interface {
	AppendAudit(ctx context.Context, r AuditRecord) (AuditRecord, error)
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]AuditRecord, error)
	// AuditHead is the last record (ErrNotFound: the log is empty).
	AuditHead(ctx context.Context) (AuditRecord, error)
	// ListAuditPage returns one page of the records q selects, by seq
	// (keyset paging: the next page starts after the last seq returned),
	// without reading the rest of the log.
	ListAuditPage(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
}

// MaxAuditPage bounds AuditQuery.Limit; MaxAuditFilterValues bounds
// AuditQuery.Actors and Devices.
const (
	MaxAuditPage         = 1000
	MaxAuditFilterValues = 500
)

// AuditQuery selects a page of the audit log (the console's audit page and
// its CSV export). Every filter set must hold.
type AuditQuery struct {
	// Actors: records by one of these actors (operator IDs, "device:<id>",
	// "system", "console", "anonymous"). Nil: any actor; empty but not
	// nil: none.
	Actors []string
	// Action: this action and the actions under it ("console" selects
	// "console.login" and "console.denied", not "consoles").
	Action string
	// Devices: records a device is part of — by it (actor "device:<id>")
	// or naming it in the target (a substring, case-sensitive).
	Devices []string
	// From, To: records at From or later, and before To; zero: open.
	From, To time.Time
	// Desc: newest first. Cursor: records after this seq (ascending) or
	// before it (descending); 0 starts at the oldest or the newest.
	Desc   bool
	Cursor int64
	Limit  int
}

// AuditHash computes the chain hash of r after prev (audit.Hash). Both
// backends use it when they append.
func AuditHash(prev []byte, r AuditRecord) []byte { return audit.Hash(prev, r) }
