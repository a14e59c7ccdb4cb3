-- Exceptions (例外措置, issue 5): an officer allows one USB device
-- (vendor:product:serial) on one terminal or a group, optionally for one
-- user, until expires_at. Never deleted: revoked ones keep who and why.
CREATE TABLE exceptions (
  id            text COLLATE "C" PRIMARY KEY,
  vendor        text NOT NULL,
  product       text NOT NULL,
  serial        text NOT NULL,
  username      text NOT NULL DEFAULT '',
  device_id     text COLLATE "C" NOT NULL DEFAULT '',
  device_group  text NOT NULL DEFAULT '',
  reason        text NOT NULL,
  created_by    text NOT NULL,
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz,
  revoked_by    text NOT NULL DEFAULT '',
  revoke_reason text NOT NULL DEFAULT '',
  CHECK ((device_id = '') <> (device_group = ''))
);
CREATE INDEX exceptions_device ON exceptions (device_id, expires_at);
CREATE INDEX exceptions_group ON exceptions (device_group, expires_at);
-- The asset ledger (端末台帳): replaced whole by each import.
CREATE TABLE ledger (
  asset_id     text COLLATE "C" PRIMARY KEY,
  hostname     text NOT NULL,
  serial       text NOT NULL,
  device_group text NOT NULL,
  location     text NOT NULL,
  note         text NOT NULL
);
CREATE TABLE ledger_import (
  id          integer PRIMARY KEY CHECK (id = 1),
  imported_by text NOT NULL,
  imported_at timestamptz NOT NULL
);
