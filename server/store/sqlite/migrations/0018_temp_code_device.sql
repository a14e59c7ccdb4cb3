-- Temporary codes bound to one terminal (issue 21): a privileged user's code
-- is valid on that device only; '' = every terminal that receives it.
ALTER TABLE mfa_temp_codes ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
