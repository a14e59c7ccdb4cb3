-- Fleet-wide replay and lock-out state (issue #14 item 9): per user and
-- device, the last TOTP step accepted there, the device's current run of
-- failures and its lock-out. Terminals receive, in their bundle, the
-- highest step of the user anywhere and the failures and lock-outs of
-- the other devices.
CREATE TABLE mfa_login_state (
  username     text COLLATE "C" NOT NULL,
  device_id    text COLLATE "C" NOT NULL,
  last_step    bigint NOT NULL DEFAULT 0,
  failures     integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (username, device_id)
);
