-- Device groups (所属 / department). A device belongs to at most one group,
-- named by the enrolment token it enrolled with, by the asset ledger or by
-- an officer. '' is "no group". Policy overrides, fleet counts and the
-- console's department views key on it.
ALTER TABLE tokens ADD COLUMN device_group TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN device_group TEXT NOT NULL DEFAULT '';
-- Counts per group read only this index.
CREATE INDEX devices_group_verdict ON devices (device_group, verdict, last_seen);
