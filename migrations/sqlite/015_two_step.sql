-- Two-step verification (TOTP, RFC 6238). secret: the shared secret, in
-- base32 (sealed, as composed messages are); enabled_at NULL while the
-- first code has not confirmed it; last_step: the last time step whose
-- code was accepted, so that no code is accepted twice.
CREATE TABLE two_step (
	user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	secret     BLOB    NOT NULL,
	enabled_at INTEGER,
	last_step  INTEGER NOT NULL DEFAULT 0
);

-- Recovery codes, stored only as SHA-256 hashes; each is deleted when used.
CREATE TABLE recovery_codes (
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	hash    BLOB    NOT NULL,
	PRIMARY KEY (user_id, hash)
) WITHOUT ROWID;
