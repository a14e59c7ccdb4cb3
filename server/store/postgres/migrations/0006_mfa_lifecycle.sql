-- MFA lifecycle (issue 4): hardware tokens, temporary codes, unlocks.
-- method is "totp" (an authenticator app) or "totp-hardware" (a seed
-- imported with its token's serial; a serial belongs to one user at most).
ALTER TABLE mfa_users ADD COLUMN method text NOT NULL DEFAULT 'totp';
ALTER TABLE mfa_users ADD COLUMN token_serial text COLLATE "C" NOT NULL DEFAULT '';
CREATE UNIQUE INDEX mfa_users_token_serial ON mfa_users (token_serial) WHERE token_serial <> '';
-- One-time temporary codes a helpdesk issued: salted SHA-256 only; id is
-- mfabundle.CodeID(hash), what terminals report when a code is used.
CREATE TABLE mfa_temp_codes (
  id         text COLLATE "C" PRIMARY KEY,
  username   text COLLATE "C" NOT NULL,
  salt       bytea NOT NULL,
  hash       text NOT NULL,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);
CREATE INDEX mfa_temp_codes_user ON mfa_temp_codes (username);
-- Unlock counters per user and device ('' = every device). They only grow
-- (a reset keeps them), so a terminal can compare with the last one it
-- applied.
CREATE TABLE mfa_unlocks (
  username   text COLLATE "C" NOT NULL,
  device_id  text COLLATE "C" NOT NULL,
  generation bigint NOT NULL,
  PRIMARY KEY (username, device_id)
);
