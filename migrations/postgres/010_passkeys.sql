-- Passkeys (WebAuthn). id: the credential's id; credential: what
-- go-webauthn keeps of it, as JSON — its public key, flags and signature
-- count, no secret.
CREATE TABLE passkeys (
	id           BYTEA  PRIMARY KEY,
	user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name         TEXT   NOT NULL,
	credential   TEXT   NOT NULL,
	created_at   BIGINT NOT NULL,
	last_used_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_user ON passkeys(user_id);

-- A WebAuthn ceremony between its two requests (the challenge the browser
-- signs): its token's hash, the account adding a passkey (NULL for a
-- login), go-webauthn's session data as JSON, and when it expires.
CREATE TABLE ceremonies (
	hash    BYTEA  PRIMARY KEY,
	user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
	data    TEXT   NOT NULL,
	expiry  BIGINT NOT NULL
);
