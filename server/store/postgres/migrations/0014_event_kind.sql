-- The event's kind (mamoriv1.Event.kind) as a column, so the evidence
-- report can list the files written to removable media under an
-- exception (agent/media's file log, clause 6(3)①) without decoding every
-- stored event. Ingest writes it for every new event ('' when the agent
-- sent none); rows stored before this migration have NULL, and the store
-- fills them in from the stored event when it opens (BackfillEventKinds),
-- so no earlier record is missing from a report.
ALTER TABLE events ADD COLUMN kind text;

-- Only the file log's kinds are indexed: every other event pays nothing
-- more at ingest.
CREATE INDEX events_file_log ON events (received_at, seq)
	WHERE kind IN ('media_file_written', 'media_file_events_dropped');

-- What the backfill has left to do; empty once it has run.
CREATE INDEX events_kind_missing ON events (seq) WHERE kind IS NULL;
