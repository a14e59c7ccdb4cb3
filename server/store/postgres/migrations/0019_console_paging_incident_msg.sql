-- The console's audit page reads the log a page at a time by seq with
-- filters (store.AuditQuery): the helpdesk's own records, or one
-- operator's, are found by this index instead of a scan of the log.
CREATE INDEX audit_actor_seq ON audit (actor, seq);
-- The device list pages by keyset (after/before a device in the order,
-- store.DeviceQuery After/Before): each order's index ends with the ID,
-- and the time orders keep never-reported devices (NULL) first ascending
-- and last descending, as SQLite does: NULLS FIRST, so both directions
-- walk the index.
CREATE INDEX devices_hostname_id ON devices (hostname, id);
DROP INDEX devices_last_seen;
CREATE INDEX devices_last_seen ON devices (last_seen NULLS FIRST, id);
CREATE INDEX devices_failing_since ON devices (failing_since NULLS FIRST, id);
-- An incident's summary as a catalogue message (store.IncidentMsg, JSON:
-- message ID and typed arguments), shown in the reader's language and
-- time zone. '' for incidents opened before: their summary text stays.
ALTER TABLE incidents ADD COLUMN summary_msg TEXT NOT NULL DEFAULT '';
-- The non-compliant list by failing time: within the verdict, in the
-- list's order (NULLS FIRST, then the ID), so a page is an index range
-- rather than a filter over the 93 % of devices that never failed.
DROP INDEX devices_verdict_failing;
CREATE INDEX devices_verdict_failing ON devices (verdict, failing_since NULLS FIRST, id);
