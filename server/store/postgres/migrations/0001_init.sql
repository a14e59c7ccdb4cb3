-- IDs and hostnames use the "C" collation: keyset paging then orders by
-- bytes, the same on every server locale and the same as SQLite.

CREATE TABLE tokens (
	id         text PRIMARY KEY,
	hash       bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	uses       integer NOT NULL,
	used       integer NOT NULL DEFAULT 0,
	note       text NOT NULL DEFAULT '',
	created_by text NOT NULL DEFAULT ''
);

CREATE TABLE devices (
	id             text COLLATE "C" PRIMARY KEY,
	-- The re-enrolment key, set at enrolment; NULL when the agent sent none.
	machine_id     text UNIQUE,
	hostname       text COLLATE "C" NOT NULL DEFAULT '',
	facts          bytea,
	enrolled_at    timestamptz NOT NULL,
	cert_serial    text NOT NULL,
	last_seen      timestamptz,
	verdict        text NOT NULL,
	reasons        text NOT NULL DEFAULT '[]',
	failing_since  timestamptz,
	policy_version bigint NOT NULL DEFAULT 0,
	-- The latest ControlRecord of every control, one blob (see codec.Controls).
	controls       bytea,
	revoked_at     timestamptz,
	revoked_reason text NOT NULL DEFAULT ''
);
CREATE INDEX devices_verdict_seen ON devices (verdict, last_seen);
CREATE INDEX devices_verdict_id ON devices (verdict, id);
CREATE INDEX devices_hostname ON devices (hostname);

CREATE TABLE events (
	seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	device_id   text COLLATE "C" NOT NULL REFERENCES devices (id),
	event_id    text NOT NULL,
	received_at timestamptz NOT NULL,
	event       bytea NOT NULL,
	UNIQUE (device_id, event_id)
);
CREATE INDEX events_device_seq ON events (device_id, seq);

CREATE TABLE control_history (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	device_id  text COLLATE "C" NOT NULL REFERENCES devices (id),
	control    text NOT NULL,
	from_state integer NOT NULL,
	to_state   integer NOT NULL,
	detail     text NOT NULL DEFAULT '',
	at         timestamptz NOT NULL
);
CREATE INDEX control_history_device ON control_history (device_id, id);

CREATE TABLE operators (
	id          text PRIMARY KEY,
	name        text NOT NULL,
	role        text NOT NULL,
	token_hash  bytea NOT NULL UNIQUE,
	created_at  timestamptz NOT NULL,
	disabled_at timestamptz
);

CREATE TABLE policies (
	version bigint PRIMARY KEY,
	policy  bytea NOT NULL,
	actor   text NOT NULL DEFAULT '',
	reason  text NOT NULL DEFAULT '',
	at      timestamptz NOT NULL
);

CREATE TABLE audit (
	seq       bigint PRIMARY KEY,
	at        timestamptz NOT NULL,
	actor     text NOT NULL,
	action    text NOT NULL,
	target    text NOT NULL,
	detail    text NOT NULL,
	prev_hash bytea,
	hash      bytea NOT NULL
);
