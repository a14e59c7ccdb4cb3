-- Times are INTEGER microseconds since the Unix epoch (UTC); NULL is "never".

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	uses       INTEGER NOT NULL,
	used       INTEGER NOT NULL DEFAULT 0,
	note       TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT ''
);

CREATE TABLE devices (
	id             TEXT PRIMARY KEY,
	-- The re-enrolment key, set at enrolment; NULL when the agent sent none.
	machine_id     TEXT UNIQUE,
	hostname       TEXT NOT NULL DEFAULT '',
	facts          BLOB,
	enrolled_at    INTEGER NOT NULL,
	cert_serial    TEXT NOT NULL,
	last_seen      INTEGER,
	verdict        TEXT NOT NULL,
	reasons        TEXT NOT NULL DEFAULT '[]',
	failing_since  INTEGER,
	policy_version INTEGER NOT NULL DEFAULT 0,
	-- The latest ControlRecord of every control, one blob (see codec.Controls).
	controls       BLOB,
	revoked_at     INTEGER,
	revoked_reason TEXT NOT NULL DEFAULT ''
);
-- Fleet counts and the offline split read only this index.
CREATE INDEX devices_verdict_seen ON devices (verdict, last_seen);
-- ListDevices by verdict walks this in keyset order.
CREATE INDEX devices_verdict_id ON devices (verdict, id);
CREATE INDEX devices_hostname ON devices (hostname);

CREATE TABLE events (
	seq         INTEGER PRIMARY KEY,
	device_id   TEXT NOT NULL REFERENCES devices (id),
	event_id    TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	event       BLOB NOT NULL,
	UNIQUE (device_id, event_id)
);
CREATE INDEX events_device_seq ON events (device_id, seq);

CREATE TABLE control_history (
	id         INTEGER PRIMARY KEY,
	device_id  TEXT NOT NULL REFERENCES devices (id),
	control    TEXT NOT NULL,
	from_state INTEGER NOT NULL,
	to_state   INTEGER NOT NULL,
	detail     TEXT NOT NULL DEFAULT '',
	at         INTEGER NOT NULL
);
CREATE INDEX control_history_device ON control_history (device_id, id);

CREATE TABLE operators (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	role        TEXT NOT NULL,
	token_hash  BLOB NOT NULL UNIQUE,
	created_at  INTEGER NOT NULL,
	disabled_at INTEGER
);

CREATE TABLE policies (
	version INTEGER PRIMARY KEY,
	policy  BLOB NOT NULL,
	actor   TEXT NOT NULL DEFAULT '',
	reason  TEXT NOT NULL DEFAULT '',
	at      INTEGER NOT NULL
);

CREATE TABLE audit (
	seq       INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL,
	actor     TEXT NOT NULL,
	action    TEXT NOT NULL,
	target    TEXT NOT NULL,
	detail    TEXT NOT NULL,
	prev_hash BLOB,
	hash      BLOB NOT NULL
);
