-- Differential reports (issue #20).
--
-- state_digest: the agent's digest of the whole state (controls, facts,
-- policy) this row holds, as the agent sent it with its last applied
-- report; '' when the last report came from an agent that keeps none.
-- A differential report applies only when its base digest equals it;
-- otherwise the server asks for a full report.
-- verdict_policy: the digest of the effective policy the verdict was
-- evaluated under; a no-change report takes the fast path only while it
-- is still the device's effective policy.
ALTER TABLE devices ADD COLUMN state_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN verdict_policy TEXT NOT NULL DEFAULT '';
