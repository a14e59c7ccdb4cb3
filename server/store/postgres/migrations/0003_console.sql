-- Web console (issue 5): operators' console credentials and signed-in
-- sessions. The session ID itself is never stored, only its SHA-256.
CREATE TABLE operator_logins (
	operator_id    text PRIMARY KEY REFERENCES operators (id),
	login          text NOT NULL UNIQUE,
	password_hash  text NOT NULL,
	totp_secret    text NOT NULL,
	failures       integer NOT NULL DEFAULT 0,
	locked_until   timestamptz,
	last_totp_step bigint NOT NULL DEFAULT 0,
	updated_at     timestamptz NOT NULL
);

CREATE TABLE console_sessions (
	id_hash     bytea PRIMARY KEY,
	operator_id text NOT NULL REFERENCES operators (id),
	created_at  timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL
);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen);
