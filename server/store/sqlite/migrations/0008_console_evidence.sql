-- Console evidence, incidents and notifications (issue 5, part B).
-- Every time in these tables is INTEGER microseconds since the Unix epoch
-- (UTC), in both backends, so one SQL text serves both
-- (server/store/internal/evsql).

-- One row per day (in the console's time zone): the fleet counts as the
-- periodic job last saw them that day. Written by an idempotent upsert, so
-- several servers may take the same day's snapshot.
CREATE TABLE compliance_daily (
	day            TEXT PRIMARY KEY, -- YYYY-MM-DD
	total          INTEGER NOT NULL,
	compliant      INTEGER NOT NULL,
	noncompliant   INTEGER NOT NULL,
	offline        INTEGER NOT NULL,
	never_reported INTEGER NOT NULL,
	revoked        INTEGER NOT NULL,
	taken_at       INTEGER NOT NULL
);

-- Durable cursors of the watcher: the last events.seq and
-- control_history.id it processed, and the times of its device sweeps.
CREATE TABLE watch_cursors (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);

-- The current state of every control of every device, derived from
-- control_history by the watcher; the fleet page counts it by control.
CREATE TABLE control_states (
	device_id  TEXT NOT NULL REFERENCES devices (id),
	control    TEXT NOT NULL,
	state      INTEGER NOT NULL,
	history_id INTEGER NOT NULL,
	PRIMARY KEY (device_id, control)
);
CREATE INDEX control_states_count ON control_states (control, state, device_id);

-- Search terms seen in events and facts: kind 'user' (logged-in or MFA
-- user names), 'usb' (USB serials of media events), 'serial' (the
-- device's serial number).
CREATE TABLE search_terms (
	kind      TEXT NOT NULL,
	term      TEXT NOT NULL,
	device_id TEXT NOT NULL REFERENCES devices (id),
	last_at   INTEGER NOT NULL,
	PRIMARY KEY (kind, term, device_id)
);

-- Occurrences that count towards "N in M minutes" rules.
CREATE TABLE incident_marks (
	rule      TEXT NOT NULL,
	device_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	ref       TEXT NOT NULL,
	PRIMARY KEY (rule, device_id, ref)
);
CREATE INDEX incident_marks_at ON incident_marks (at);
CREATE INDEX incident_marks_window ON incident_marks (rule, device_id, at);

-- Incidents (policy 6(7)): open -> acknowledged -> closed. (rule, device,
-- episode) is unique, so the same finding never opens twice; at most one
-- incident per (rule, device) is not closed.
CREATE TABLE incidents (
	id           INTEGER PRIMARY KEY,
	rule         TEXT NOT NULL,
	device_id    TEXT NOT NULL,
	episode      TEXT NOT NULL,
	state        TEXT NOT NULL,
	summary      TEXT NOT NULL,
	occurrences  INTEGER NOT NULL,
	opened_at    INTEGER NOT NULL,
	last_at      INTEGER NOT NULL,
	escalated_at INTEGER,
	acked_at     INTEGER,
	acked_by     TEXT NOT NULL DEFAULT '',
	ack_note     TEXT NOT NULL DEFAULT '',
	closed_at    INTEGER,
	closed_by    TEXT NOT NULL DEFAULT '',
	close_note   TEXT NOT NULL DEFAULT '',
	UNIQUE (rule, device_id, episode)
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule, device_id) WHERE state <> 'closed';
CREATE INDEX incidents_state ON incidents (state, id);

-- The notification outbox: one row per (incident event, channel),
-- delivered with retries by whichever server claims it first.
CREATE TABLE notifications (
	id          INTEGER PRIMARY KEY,
	channel     TEXT NOT NULL,
	incident_id INTEGER NOT NULL REFERENCES incidents (id),
	kind        TEXT NOT NULL, -- 'open' or 'escalate'
	created_at  INTEGER NOT NULL,
	state       TEXT NOT NULL, -- pending, sent, failed, suppressed
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_at     INTEGER NOT NULL,
	lease_until INTEGER NOT NULL DEFAULT 0,
	sent_at     INTEGER,
	last_error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX notifications_due ON notifications (state, next_at);
CREATE INDEX notifications_sent ON notifications (channel, sent_at);

-- Sweeps of the watcher: devices turning non-compliant and going silent,
-- and (re-)enrolments for the serial-number search.
CREATE INDEX devices_verdict_failing ON devices (verdict, failing_since);
CREATE INDEX devices_enrolled ON devices (enrolled_at);
-- The evidence export reads history per device and time.
CREATE INDEX control_history_device_at ON control_history (device_id, at);
