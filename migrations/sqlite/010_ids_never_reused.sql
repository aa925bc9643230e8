-- An id is never given twice (AUTOINCREMENT), as on PostgreSQL (IDENTITY).
-- A deleted account's id given to the next signup would make the app take
-- a new person for the old one (Remote-User, webhooks); a deleted outbox
-- row's id given to a new row would let a delivery still recording the old
-- one's outcome mark the new one sent. Run with foreign keys off (migrate),
-- so that dropping the old tables deletes nothing that refers to them.
CREATE TABLE users_new (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	created_at    INTEGER NOT NULL,
	name          TEXT    NOT NULL,
	email         TEXT    NOT NULL,
	email_key     TEXT    NOT NULL UNIQUE, -- lower-cased email: unique regardless of case
	password_hash BLOB    NOT NULL,
	activated     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO users_new (id, created_at, name, email, email_key, password_hash, activated)
	SELECT id, created_at, name, email, email_key, password_hash, activated FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

CREATE TABLE outbox_new (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id         INTEGER REFERENCES users(id) ON DELETE CASCADE,
	created_at      INTEGER NOT NULL,
	message_id      TEXT    NOT NULL,
	recipient       TEXT    NOT NULL,
	message         BLOB,
	status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	claimed_until   INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	kind            TEXT    NOT NULL DEFAULT 'welcome',
	claimed_by      TEXT    NOT NULL DEFAULT '',
	channel         TEXT    NOT NULL DEFAULT 'email'
);
INSERT INTO outbox_new (id, user_id, created_at, message_id, recipient, message, status, attempts, next_attempt_at, claimed_until, last_error, kind, claimed_by, channel)
	SELECT id, user_id, created_at, message_id, recipient, message, status, attempts, next_attempt_at, claimed_until, last_error, kind, claimed_by, channel FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_user ON outbox(user_id);
