-- Sessions: a browser's login (scope 'session') and a bearer token (scope
-- 'authentication') are tokens with a public id (never the secret), the
-- user agent that made them, and when they were made and last used.
ALTER TABLE tokens ADD COLUMN session_id TEXT;
ALTER TABLE tokens ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE tokens SET session_id = md5(random()::text || hash::text), created_at = expiry - 86400000, last_used_at = expiry - 86400000
	WHERE scope = 'authentication';

-- An address change waiting for both addresses to confirm it (their tokens
-- are in tokens, scopes 'email-change-old' and 'email-change-new'). taken:
-- the new address had an account, so no link went to it and the change can
-- never complete.
CREATE TABLE email_changes (
	user_id       BIGINT  PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	new_email     TEXT    NOT NULL,
	taken         INTEGER NOT NULL DEFAULT 0,
	old_confirmed INTEGER NOT NULL DEFAULT 0,
	new_confirmed INTEGER NOT NULL DEFAULT 0,
	expiry        BIGINT  NOT NULL
);

-- An outbox row may outlive its account: the "account deleted" email has
-- no user (user_id NULL). The account's other rows still go with it.
ALTER TABLE outbox ALTER COLUMN user_id DROP NOT NULL;
CREATE INDEX outbox_user ON outbox(user_id);
