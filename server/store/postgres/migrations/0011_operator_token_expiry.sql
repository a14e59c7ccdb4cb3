-- Operator API tokens expire (issue 14 item 7). NULL: a token issued
-- before expiry existed; the server gives those an expiry at its next
-- start (serve.ExpireLegacyTokens) and refuses them until then.
ALTER TABLE operators ADD COLUMN token_expires_at timestamptz;
