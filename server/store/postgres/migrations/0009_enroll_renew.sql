-- Idempotent enrolment and certificate renewal (issue 7).
--
-- token_uses records which machine spent a use of which token, and with
-- which key (SHA-256 of the CSR's SubjectPublicKeyInfo). An enrolment that
-- is retried after a lost answer (same token, machine ID and key) is issued
-- again without counting another use.
CREATE TABLE token_uses (
	token_id   text NOT NULL REFERENCES tokens (id),
	machine_id text NOT NULL,
	key_hash   bytea NOT NULL,
	device_id  text NOT NULL,
	at         timestamptz NOT NULL,
	PRIMARY KEY (token_id, machine_id)
);
-- prev_cert_serial is the certificate a device presented when it last
-- renewed: it stays valid (same key, same device) until it expires, so an
-- agent that was stopped before it saved the new certificate keeps working.
-- Re-enrolment clears it.
ALTER TABLE devices ADD COLUMN prev_cert_serial text;
