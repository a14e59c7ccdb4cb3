-- Exceptions (例外措置, issue 5): an officer allows one USB device
-- (vendor:product:serial) on one terminal or a group, optionally for one
-- user, until expires_at. Never deleted: revoked ones keep who and why.
CREATE TABLE exceptions (
	id            TEXT PRIMARY KEY,
	vendor        TEXT NOT NULL,
	product       TEXT NOT NULL,
	serial        TEXT NOT NULL,
	username      TEXT NOT NULL DEFAULT '',
	device_id     TEXT NOT NULL DEFAULT '',
	device_group  TEXT NOT NULL DEFAULT '',
	reason        TEXT NOT NULL,
	created_by    TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	revoked_at    INTEGER,
	revoked_by    TEXT NOT NULL DEFAULT '',
	revoke_reason TEXT NOT NULL DEFAULT '',
	CHECK ((device_id = '') <> (device_group = ''))
);
CREATE INDEX exceptions_device ON exceptions (device_id, expires_at);
CREATE INDEX exceptions_group ON exceptions (device_group, expires_at);
-- The asset ledger (端末台帳): replaced whole by each import.
CREATE TABLE ledger (
	asset_id     TEXT PRIMARY KEY,
	hostname     TEXT NOT NULL,
	serial       TEXT NOT NULL,
	device_group TEXT NOT NULL,
	location     TEXT NOT NULL,
	note         TEXT NOT NULL
);
CREATE TABLE ledger_import (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	imported_by TEXT NOT NULL,
	imported_at INTEGER NOT NULL
);
