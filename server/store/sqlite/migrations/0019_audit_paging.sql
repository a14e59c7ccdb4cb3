-- The console's audit page reads the log a page at a time by seq with
-- filters (store.AuditQuery): the helpdesk's own records, or one
-- operator's, are found by this index instead of a scan of the log.
CREATE INDEX audit_actor_seq ON audit (actor, seq);
