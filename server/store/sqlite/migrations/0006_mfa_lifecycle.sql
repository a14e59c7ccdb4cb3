-- MFA lifecycle (issue 4): hardware tokens, temporary codes, unlocks.
-- method is "totp" (an authenticator app) or "totp-hardware" (a seed
-- imported with its token's serial; a serial belongs to one user at most).
ALTER TABLE mfa_users ADD COLUMN method TEXT NOT NULL DEFAULT 'totp';
ALTER TABLE mfa_users ADD COLUMN token_serial TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX mfa_users_token_serial ON mfa_users (token_serial) WHERE token_serial <> '';
-- One-time temporary codes a helpdesk issued: salted SHA-256 only; id is
-- mfabundle.CodeID(hash), what terminals report when a code is used.
CREATE TABLE mfa_temp_codes (
  id         TEXT PRIMARY KEY,
  username   TEXT NOT NULL,
  salt       BLOB NOT NULL,
  hash       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at    INTEGER
);
CREATE INDEX mfa_temp_codes_user ON mfa_temp_codes (username);
-- Unlock counters per user and device ('' = every device). They only grow
-- (a reset keeps them), so a terminal can compare with the last one it
-- applied.
CREATE TABLE mfa_unlocks (
  username   TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  generation INTEGER NOT NULL,
  PRIMARY KEY (username, device_id)
);
