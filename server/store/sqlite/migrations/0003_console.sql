-- Web console (issue 5): operators' console credentials and signed-in
-- sessions. The session ID itself is never stored, only its SHA-256.
CREATE TABLE operator_logins (
	operator_id    TEXT PRIMARY KEY REFERENCES operators (id),
	login          TEXT NOT NULL UNIQUE,
	password_hash  TEXT NOT NULL,
	totp_secret    TEXT NOT NULL,
	failures       INTEGER NOT NULL DEFAULT 0,
	locked_until   INTEGER,
	last_totp_step INTEGER NOT NULL DEFAULT 0,
	updated_at     INTEGER NOT NULL
);

CREATE TABLE console_sessions (
	id_hash     BLOB PRIMARY KEY,
	operator_id TEXT NOT NULL REFERENCES operators (id),
	created_at  INTEGER NOT NULL,
	last_seen   INTEGER NOT NULL
);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen);
