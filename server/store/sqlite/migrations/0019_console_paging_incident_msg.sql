-- The console's audit page reads the log a page at a time by seq with
-- filters (store.AuditQuery): the helpdesk's own records, or one
-- operator's, are found by this index instead of a scan of the log.
CREATE INDEX audit_actor_seq ON audit (actor, seq);
-- The device list pages by keyset (after/before a device in the order,
-- store.DeviceQuery After/Before): each order's index ends with the ID.
CREATE INDEX devices_hostname_id ON devices (hostname, id);
CREATE INDEX devices_failing_since ON devices (failing_since, id);
-- An incident's summary as a catalogue message (store.IncidentMsg, JSON:
-- message ID and typed arguments), shown in the reader's language and
-- time zone. '' for incidents opened before: their summary text stays.
ALTER TABLE incidents ADD COLUMN summary_msg TEXT NOT NULL DEFAULT '';
