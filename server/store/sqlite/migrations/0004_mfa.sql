-- Multi-factor login (issue 4). One row per login user; secret_sealed is
-- the TOTP seed sealed under the server's MFA key (server/mfa), recovery
-- codes are salted SHA-256 hashes, space-separated. mfa_generation is one
-- fleet-wide counter bumped by every change, so a report learns in one read
-- whether a terminal's bundle is stale.
CREATE TABLE mfa_users (
  username        TEXT PRIMARY KEY,
  secret_sealed   BLOB NOT NULL,
  algorithm       TEXT NOT NULL,
  digits          INTEGER NOT NULL,
  period_seconds  INTEGER NOT NULL,
  recovery_salt   BLOB NOT NULL,
  recovery_hashes TEXT NOT NULL,
  created_at      INTEGER NOT NULL,
  created_by      TEXT NOT NULL,
  generation      INTEGER NOT NULL
);
CREATE TABLE mfa_generation (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  generation INTEGER NOT NULL
);
INSERT INTO mfa_generation (id, generation) VALUES (1, 0);
