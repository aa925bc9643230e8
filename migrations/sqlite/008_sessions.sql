-- Sessions: a browser's login (scope 'session') and a bearer token (scope
-- 'authentication') are tokens with a public id (never the secret), the
-- user agent that made them, and when they were made and last used.
ALTER TABLE tokens ADD COLUMN session_id TEXT;
ALTER TABLE tokens ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE tokens SET session_id = lower(hex(randomblob(8))), created_at = expiry - 86400000, last_used_at = expiry - 86400000
	WHERE scope = 'authentication';

-- An address change waiting for both addresses to confirm it (their tokens
-- are in tokens, scopes 'email-change-old' and 'email-change-new'). taken:
-- the new address had an account, so no link went to it and the change can
-- never complete.
CREATE TABLE email_changes (
	user_id       INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	new_email     TEXT    NOT NULL,
	taken         INTEGER NOT NULL DEFAULT 0,
	old_confirmed INTEGER NOT NULL DEFAULT 0,
	new_confirmed INTEGER NOT NULL DEFAULT 0,
	expiry        INTEGER NOT NULL
);

-- An outbox row may outlive its account: the "account deleted" email has
-- no user (user_id NULL). The account's other rows still go with it.
CREATE TABLE outbox_new (
	id              INTEGER PRIMARY KEY,
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
	claimed_by      TEXT    NOT NULL DEFAULT ''
);
INSERT INTO outbox_new (id, user_id, created_at, message_id, recipient, message, status, attempts, next_attempt_at, claimed_until, last_error, kind, claimed_by)
	SELECT id, user_id, created_at, message_id, recipient, message, status, attempts, next_attempt_at, claimed_until, last_error, kind, claimed_by FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_user ON outbox(user_id);
