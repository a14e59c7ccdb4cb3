-- The console's device list (端末一覧, issue #19) filters by OS and agent
-- version: copied out of the facts blob at enrolment and whenever a report
-- carries facts. Devices enrolled before this migration show '' until their
-- agent next sends its facts (at start-up and when they change).
ALTER TABLE devices ADD COLUMN os TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_os ON devices (os, id);
CREATE INDEX devices_agent_version ON devices (agent_version, id);
-- Sorting the list by last report, and by 所属 then host name.
CREATE INDEX devices_last_seen ON devices (last_seen, id);
CREATE INDEX devices_group_hostname ON devices (device_group, hostname, id);
