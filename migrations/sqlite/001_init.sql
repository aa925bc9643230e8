-- Times are Unix milliseconds (UTC).
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	created_at    INTEGER NOT NULL,
	name          TEXT    NOT NULL,
	email         TEXT    NOT NULL,
	email_key     TEXT    NOT NULL UNIQUE, -- lower-cased email: unique regardless of case
	password_hash BLOB    NOT NULL,
	activated     INTEGER NOT NULL DEFAULT 0
);

-- Tokens are stored only as SHA-256 hashes.
CREATE TABLE tokens (
	hash    BLOB    PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	scope   TEXT    NOT NULL,
	expiry  INTEGER NOT NULL
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expiry ON tokens(expiry);

-- One row per email to send. message holds the composed RFC 5322 message
-- (with its activation token) only until the SMTP server accepts it.
CREATE TABLE outbox (
	id              INTEGER PRIMARY KEY,
	user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	created_at      INTEGER NOT NULL,
	message_id      TEXT    NOT NULL,
	recipient       TEXT    NOT NULL,
	message         BLOB,
	status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	claimed_until   INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
