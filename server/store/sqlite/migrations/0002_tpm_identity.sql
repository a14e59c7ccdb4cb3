-- Attested enrolment (issue 9). ek_fingerprint is the SHA-256 (hex) of the
-- TPM endorsement key a device last enrolled with through attestation: a
-- later attested enrolment with the same EK is the same device. It is kept
-- when the device re-enrols with a software key; key_attested says whether
-- the current certificate's key was attested to be in that TPM.
ALTER TABLE devices ADD COLUMN ek_fingerprint TEXT;
ALTER TABLE devices ADD COLUMN key_attested INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX devices_ek_fingerprint ON devices (ek_fingerprint);
