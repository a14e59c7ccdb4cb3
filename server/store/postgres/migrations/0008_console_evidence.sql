-- Console evidence, incidents and notifications (issue 5, part B).
-- Every time in these tables is bigint microseconds since the Unix epoch
-- (UTC), in both backends, so one SQL text serves both
-- (server/store/internal/evsql).

-- One row per day (in the console's time zone): the fleet counts as the
-- periodic job last saw them that day. Written by an idempotent upsert, so
-- several servers may take the same day's snapshot.
CREATE TABLE compliance_daily (
	day            text PRIMARY KEY, -- YYYY-MM-DD
	total          bigint NOT NULL,
	compliant      bigint NOT NULL,
	noncompliant   bigint NOT NULL,
	offline        bigint NOT NULL,
	never_reported bigint NOT NULL,
	revoked        bigint NOT NULL,
	taken_at       bigint NOT NULL
);

-- Durable cursors of the watcher: the last events.seq and
-- control_history.id it processed, and the times of its device sweeps.
CREATE TABLE watch_cursors (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);

-- The current state of every control of every device, derived from
-- control_history by the watcher; the fleet page counts it by control.
CREATE TABLE control_states (
	device_id  text COLLATE "C" NOT NULL REFERENCES devices (id),
	control    text NOT NULL,
	state      bigint NOT NULL,
	history_id bigint NOT NULL,
	PRIMARY KEY (device_id, control)
);
CREATE INDEX control_states_count ON control_states (control, state, device_id);

-- Search terms seen in events and facts: kind 'user' (logged-in or MFA
-- user names), 'usb' (USB serials of media events), 'serial' (the
-- device's serial number).
CREATE TABLE search_terms (
	kind      text NOT NULL,
	term      text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL REFERENCES devices (id),
	last_at   bigint NOT NULL,
	PRIMARY KEY (kind, term, device_id)
);

-- Occurrences that count towards "N in M minutes" rules.
CREATE TABLE incident_marks (
	rule      text NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	at        bigint NOT NULL,
	ref       text NOT NULL,
	PRIMARY KEY (rule, device_id, ref)
);
CREATE INDEX incident_marks_at ON incident_marks (at);
CREATE INDEX incident_marks_window ON incident_marks (rule, device_id, at);

-- Incidents (policy 6(7)): open -> acknowledged -> closed. (rule, device,
-- episode) is unique, so the same finding never opens twice; at most one
-- incident per (rule, device) is not closed.
CREATE TABLE incidents (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rule         text NOT NULL,
	device_id    text COLLATE "C" NOT NULL,
	episode      text NOT NULL,
	state        text NOT NULL,
	summary      text NOT NULL,
	occurrences  bigint NOT NULL,
	opened_at    bigint NOT NULL,
	last_at      bigint NOT NULL,
	escalated_at bigint,
	acked_at     bigint,
	acked_by     text NOT NULL DEFAULT '',
	ack_note     text NOT NULL DEFAULT '',
	closed_at    bigint,
	closed_by    text NOT NULL DEFAULT '',
	close_note   text NOT NULL DEFAULT '',
	UNIQUE (rule, device_id, episode)
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule, device_id) WHERE state <> 'closed';
CREATE INDEX incidents_state ON incidents (state, id);

-- The notification outbox: one row per (incident event, channel),
-- delivered with retries by whichever server claims it first.
CREATE TABLE notifications (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	channel     text NOT NULL,
	incident_id bigint NOT NULL REFERENCES incidents (id),
	kind        text NOT NULL, -- 'open' or 'escalate'
	created_at  bigint NOT NULL,
	state       text NOT NULL, -- pending, sent, failed, suppressed
	attempts    bigint NOT NULL DEFAULT 0,
	next_at     bigint NOT NULL,
	lease_until bigint NOT NULL DEFAULT 0,
	sent_at     bigint,
	last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX notifications_due ON notifications (state, next_at);
CREATE INDEX notifications_sent ON notifications (channel, sent_at);

-- Sweeps of the watcher: devices turning non-compliant and going silent,
-- and (re-)enrolments for the serial-number search.
CREATE INDEX devices_verdict_failing ON devices (verdict, failing_since);
CREATE INDEX devices_enrolled ON devices (enrolled_at);
-- The evidence export reads history per device and time.
CREATE INDEX control_history_device_at ON control_history (device_id, at);
