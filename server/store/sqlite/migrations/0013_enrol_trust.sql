-- Enrolment needs proof (docs/security.md, "who the server believes").
--
-- clone_of: this record was made by an enrolment that named the machine ID
-- of device clone_of without proving it is that device (its current key or
-- its TPM EK). It is a new device, flagged as a possible clone, until an
-- officer approves it as that device re-enrolled (ApproveClone). Its
-- machine_id stays NULL until then; the claimed one is in its facts.
ALTER TABLE devices ADD COLUMN clone_of TEXT;
CREATE INDEX devices_clone_of ON devices (clone_of);

-- approved_eks: TPM endorsement keys (SHA-256 of the EK public key, hex)
-- an officer approved: an enrolment proving one of them is attested even
-- when its EK certificate does not chain to a configured vendor root.
CREATE TABLE approved_eks (
	fingerprint TEXT PRIMARY KEY,
	approved_by TEXT NOT NULL,
	approved_at INTEGER NOT NULL,
	note        TEXT NOT NULL DEFAULT ''
);

-- enroll_failures: one row per enrolment refused for its token (unknown or
-- expired), with the caller's address; the incident watcher reads them
-- after its cursor (rule enroll-token-guessing). The number of rows one
-- address can write is bounded by its failed-token budget (admission).
CREATE TABLE enroll_failures (
	id     INTEGER PRIMARY KEY,
	source TEXT NOT NULL,
	at     INTEGER NOT NULL,
	reason TEXT NOT NULL
);
CREATE INDEX enroll_failures_at ON enroll_failures (at);
