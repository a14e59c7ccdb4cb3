-- Operator API tokens (issue 14 item 7): opt-in, named, expiring, listed
-- and revoked one by one. An operator has none, one or several; the
-- console needs none. operators.token_hash stays (NOT NULL UNIQUE) but no
-- longer authenticates: new operators get a random hash there.
--
-- single_use: the first admin's bootstrap token, which ends at its first
-- successful use (revoked_at is set then) or at expires_at.
-- expires_at NULL: a token from before expiry existed; the server gives
-- it an expiry at start (serve.ExpireLegacyTokens) and refuses it until then.
CREATE TABLE operator_tokens (
	id          text PRIMARY KEY,
	operator_id text NOT NULL REFERENCES operators (id),
	name        text NOT NULL,
	token_hash  bytea NOT NULL UNIQUE,
	created_by  text NOT NULL,
	created_at  timestamptz NOT NULL,
	expires_at  timestamptz,
	revoked_at  timestamptz,
	revoked_by  text NOT NULL DEFAULT '',
	last_used_at timestamptz,
	single_use  integer NOT NULL DEFAULT 0
);
-- A name is unique among an operator's tokens that are not revoked.
CREATE UNIQUE INDEX operator_tokens_name ON operator_tokens (operator_id, name) WHERE revoked_at IS NULL;

-- The tokens operators had: every operator's one token, named "legacy",
-- except console-only operators' (a random hash, expired at creation).
INSERT INTO operator_tokens (id, operator_id, name, token_hash, created_by, created_at, expires_at)
	SELECT id, id, 'legacy', token_hash, 'migration', created_at, token_expires_at FROM operators
	WHERE token_expires_at IS NULL OR token_expires_at > created_at;
