-- Passkeys (WebAuthn). id: the credential's id; credential: what
-- go-webauthn keeps of it, as JSON — its public key, flags and signature
-- count, no secret.
CREATE TABLE passkeys (
	id           BLOB    PRIMARY KEY,
	user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name         TEXT    NOT NULL,
	credential   TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_user ON passkeys(user_id);

-- A WebAuthn ceremony between its two requests (the challenge the browser
-- signs): its token's hash, the account adding a passkey (NULL for a
-- login), go-webauthn's session data as JSON, and when it expires.
CREATE TABLE ceremonies (
	hash    BLOB    PRIMARY KEY,
	user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
	data    TEXT    NOT NULL,
	expiry  INTEGER NOT NULL
);
