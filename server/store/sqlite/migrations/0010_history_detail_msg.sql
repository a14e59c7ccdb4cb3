-- The detail of a control's state change as the agent's catalogue message
-- (ControlStatus detail_id, detail_args and detail_parts, protobuf-encoded;
-- NULL when the agent sent none), so the console can show a history entry
-- in the reader's language. detail keeps the English text.
ALTER TABLE control_history ADD COLUMN detail_msg BLOB;
