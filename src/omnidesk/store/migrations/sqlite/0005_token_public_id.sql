-- API tokens get a random public id: the one the API, the UI and the CLI show
-- and revoke by. The sequential row id stays internal: small integers invite
-- guessing (``DELETE /api/v1/me/tokens/7``), a random id names only a token
-- its owner has been shown.
ALTER TABLE api_tokens ADD COLUMN public_id TEXT;
UPDATE api_tokens SET public_id = 'tok_' || lower(hex(randomblob(12)));
CREATE UNIQUE INDEX api_tokens_public_id ON api_tokens (public_id);
