-- Multi-factor login (issue 4). One row per login user; secret_sealed is
-- the TOTP seed sealed under the server's MFA key (server/mfa), recovery
-- codes are salted SHA-256 hashes, space-separated. mfa_generation is one
-- fleet-wide counter bumped by every change, so a report learns in one read
-- whether a terminal's bundle is stale.
CREATE TABLE mfa_users (
  username        text COLLATE "C" PRIMARY KEY,
  secret_sealed   bytea NOT NULL,
  algorithm       text NOT NULL,
  digits          integer NOT NULL,
  period_seconds  integer NOT NULL,
  recovery_salt   bytea NOT NULL,
  recovery_hashes text NOT NULL,
  created_at      timestamptz NOT NULL,
  created_by      text NOT NULL,
  generation      bigint NOT NULL
);
CREATE TABLE mfa_generation (
  id         integer PRIMARY KEY CHECK (id = 1),
  generation bigint NOT NULL
);
INSERT INTO mfa_generation (id, generation) VALUES (1, 0);
