package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Evidence is what the console's evidence, incident and notification
// features need: daily compliance snapshots, counts by control, search by
// user / serial / USB serial, the watcher that turns stored events and
// history into incidents, the notification outbox, and operator admin.
type Evidence interface {
	// PutDailySnapshot stores the fleet counts of one day, replacing that
	// day's earlier snapshot (idempotent; several servers may call it).
	PutDailySnapshot(ctx context.Context, s DailySnapshot) error
	// DailySnapshots returns the snapshots of the days in [from, to]
	// (YYYY-MM-DD), oldest first.
	DailySnapshots(ctx context.Context, from, to string) ([]DailySnapshot, error)
	// CountByControl counts the devices (not revoked) by control and the
	// control's latest state, as the watcher last derived it.
	CountByControl(ctx context.Context) ([]ControlCount, error)
	// SearchTerms finds devices by a term of kind (TermUser, TermUSB,
	// TermSerial) starting with prefix, newest sighting first within the
	// first limit terms in byte order.
	SearchTerms(ctx context.Context, kind, prefix string, limit int) ([]TermHit, error)
	// HistoryForDevices returns the control history of the given devices up
	// to until, ordered by device, then time.
	HistoryForDevices(ctx context.Context, ids []string, until time.Time) ([]HistoryEntry, error)

	// Watch runs one step of the watcher in one transaction: it reads what
	// was stored after the durable cursors (at most p.Limit events and
	// history rows), hands it to judge, applies what judge returns
	// (search terms, incident signals, notifications for each of
	// p.Channels) and advances the cursors. A crash before commit changes
	// nothing; several servers may call it (they take turns).
	Watch(ctx context.Context, p WatchParams, judge Judge) (WatchResult, error)
	Incidents(ctx context.Context, f IncidentFilter) ([]Incident, error)
	GetIncident(ctx context.Context, id int64) (Incident, error)
	// TransitionIncident moves an incident to acknowledged or closed;
	// ErrConflict when the move is not allowed from its state (closed is
	// final; open -> acknowledged -> closed, open -> closed).
	TransitionIncident(ctx context.Context, id int64, to, by, note string, at time.Time) (Incident, error)

	// ClaimNotifications leases up to limit due notifications (pending,
	// next_at <= now, lease expired) until leaseUntil and counts an
	// attempt on each.
	ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]Notification, error)
	// FinishNotification records the outcome of a claimed notification.
	FinishNotification(ctx context.Context, id int64, r NotificationOutcome) error
	// CountSent counts notifications of channel sent at or after since.
	CountSent(ctx context.Context, channel string, since time.Time) (int, error)

	// ListOperators lists every operator with its console login, if any.
	ListOperators(ctx context.Context) ([]OperatorAccount, error)
	// DisableOperator disables an operator (API token and console) and
	// ends its sessions; ErrNotFound for an unknown one.
	DisableOperator(ctx context.Context, id string, at time.Time) error
	// ResetLockout clears a console login's failures and lock.
	ResetLockout(ctx context.Context, id string, at time.Time) error
	// EndSessions signs an operator out of every browser (after an admin
	// reset its password or TOTP secret); none is not an error.
	EndSessions(ctx context.Context, operatorID string) error
}

// DailySnapshot is the fleet on one day.
type DailySnapshot struct {
	Day string // YYYY-MM-DD in the console's time zone
	FleetCounts
	TakenAt time.Time
}

// ControlCount is how many devices have a control in a state.
type ControlCount struct {
	Control string
	State   mamoriv1.ControlState
	N       int64
}

// Search term kinds.
const (
	TermUser   = "user"   // logged-in or MFA user names seen in events
	TermUSB    = "usb"    // USB serials of media events
	TermSerial = "serial" // the device's own serial number (facts)
)

// SearchTerm is one sighting of a term on a device.
type SearchTerm struct {
	Kind, Term, DeviceID string
	At                   time.Time
}

// TermHit is a device found by a term.
type TermHit struct {
	Term     string
	DeviceID string
	Hostname string
	LastAt   time.Time
}

// Incident states.
const (
	IncidentOpen         = "open"
	IncidentAcknowledged = "acknowledged"
	IncidentClosed       = "closed"
)

// Incident is one finding that needs a person (policy 6(7)).
type Incident struct {
	ID       int64
	Rule     string
	DeviceID string
	Hostname string // filled by Incidents and GetIncident
	Episode  string
	State    string
	Summary  string
	// SummaryMsg is Summary as a catalogue message (zero for incidents
	// opened before it was stored: their Summary text stands).
	SummaryMsg  IncidentMsg
	Occurrences int64
	OpenedAt    time.Time
	LastAt      time.Time
	EscalatedAt time.Time
	AckedAt     time.Time
	AckedBy     string
	AckNote     string
	ClosedAt    time.Time
	ClosedBy    string
	CloseNote   string
}

// IncidentFilter selects incidents, newest first.
type IncidentFilter struct {
	State    string // '' all, or one of the Incident states; "active" is open + acknowledged
	DeviceID string
	BeforeID int64 // keyset cursor; 0 from the newest
	Limit    int
}

// WatchParams steer one watcher step.
type WatchParams struct {
	Now time.Time
	// Limit bounds the events and the history rows read in one step.
	Limit int
	// SilentBefore: a reporting device last seen before this is silent.
	SilentBefore time.Time
	// SilentGroups replaces SilentBefore for the devices of the groups it
	// names (groups with a max report age of their own); each group keeps
	// a sweep cursor of its own.
	SilentGroups map[string]time.Time
	// Margin re-reads the device sweeps this far back, so a row committed
	// late by another server is not missed (episodes make it idempotent).
	Margin time.Duration
	// EscalateBefore: an incident still open (not acknowledged) that was
	// opened before this escalates once. Zero: never.
	EscalateBefore time.Time
	// MarkHorizon: occurrence marks older than this are pruned.
	MarkHorizon time.Time
	// Channels get one notification per opened or escalated incident.
	Channels []string
}

// HistoryRow is a control_history row with its ID.
type HistoryRow struct {
	ID int64
	HistoryEntry
}

// DeviceMark is a device with the time a sweep is about.
type DeviceMark struct {
	DeviceID string
	At       time.Time
}

// WatchBatch is what was stored since the watcher's cursors.
type WatchBatch struct {
	// Now is WatchParams.Now.
	Now     time.Time
	Events  []StoredEvent
	History []HistoryRow
	// Failing: devices NONCOMPLIANT with their failing_since.
	Failing []DeviceMark
	// Silent: reporting devices last seen before SilentBefore.
	Silent []DeviceMark
	// Enrolled: devices (re-)enrolled recently, with their facts.
	Enrolled []Device
	// EnrollFailures: enrolments refused for their token since the last
	// step.
	EnrollFailures []EnrollFailure
}

// Signal is one finding a rule made. Threshold > 1 makes it count: an
// incident opens when Threshold signals of (Rule, DeviceID) fall within
// Window; Ref makes each occurrence count once.
type Signal struct {
	Rule, DeviceID string
	// Episode: the same (Rule, DeviceID, Episode) never opens twice.
	Episode string
	At      time.Time
	Summary string
	// SummaryMsg is Summary as a catalogue message, stored with the
	// incident the signal opens.
	SummaryMsg IncidentMsg
	Threshold  int
	Window     time.Duration
	Ref        string
}

// Judge turns a batch into search terms and signals. It must be pure: it
// may run again on the same batch after a failed commit.
type Judge func(WatchBatch) ([]SearchTerm, []Signal, error)

// WatchResult says what a step did.
type WatchResult struct {
	Events, History int
	Opened, Bumped  int
	Escalated       int
	// OpenedIDs and EscalatedIDs name those incidents.
	OpenedIDs, EscalatedIDs []int64
	// More: the limit was reached; call again.
	More bool
}

// Notification is one message of the outbox.
type Notification struct {
	ID        int64
	Channel   string
	Kind      string // "open" or "escalate"
	Attempts  int
	CreatedAt time.Time
	Incident  Incident
}

// Notification states.
const (
	NotifyPending    = "pending"
	NotifySent       = "sent"
	NotifyFailed     = "failed"
	NotifySuppressed = "suppressed"
)

// NotificationOutcome: State is NotifySent, NotifySuppressed, NotifyFailed
// (final) or NotifyPending with NextAt for a retry.
type NotificationOutcome struct {
	State string
	At    time.Time
	// NextAt is the retry time when State is pending.
	NextAt time.Time
	Error  string
}

// OperatorAccount is an operator with its console login (Login is ”
// without one).
type OperatorAccount struct {
	Operator
	Login       string
	Failures    int
	LockedUntil time.Time
}

// IncidentMsg is an incident's summary as a catalogue message: the
// message's ID and its arguments, each typed by a prefix — "t:" a time
// (RFC 3339, UTC), "d:" a duration (Go syntax), "s:" text — so a reader
// sees times in their own zone and text in their own language.
type IncidentMsg struct {
	ID   string   `json:"id"`
	Args []string `json:"args,omitempty"`
}

// Bounds of a stored IncidentMsg: arguments come from agents' events.
const (
	MaxIncidentMsgArgs   = 8
	MaxIncidentMsgArgLen = 512
)

// EncodeIncidentMsg is m as stored: "" for the zero message; arguments
// beyond the bounds are cut (at a rune boundary), invalid UTF-8 replaced.
func EncodeIncidentMsg(m IncidentMsg) string {
	if m.ID == "" {
		return ""
	}
	m.ID = clipRunes(m.ID, 128)
	if len(m.Args) > MaxIncidentMsgArgs {
		m.Args = m.Args[:MaxIncidentMsgArgs]
	}
	args := make([]string, len(m.Args))
	for i, a := range m.Args {
		args[i] = clipRunes(a, MaxIncidentMsgArgLen)
	}
	m.Args = args
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	return string(b)
}

// DecodeIncidentMsg reads a stored message; the zero message for "" or
// anything that is not one (an old row, a damaged one).
func DecodeIncidentMsg(s string) IncidentMsg {
	var m IncidentMsg
	if s == "" || len(s) > 2*MaxIncidentMsgArgs*MaxIncidentMsgArgLen+1024 || json.Unmarshal([]byte(s), &m) != nil ||
		len(m.Args) > MaxIncidentMsgArgs {
		return IncidentMsg{}
	}
	return m
}

func clipRunes(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
