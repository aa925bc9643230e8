-- The operator's side. disabled_at: when the operator disabled the
-- account (NULL: not disabled); a disabled account holds no session and
-- logs no one in. invited_at: when the operator invited the address; an
-- invited account has no password until its link's holder chooses one.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE users ADD COLUMN invited_at INTEGER;

-- What happened to each account, written in the transaction of the change
-- it records, kept -activity-retention. client_addr and user_agent are
-- shown to the account's owner alone.
CREATE TABLE activity (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	at          INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	client_addr TEXT    NOT NULL DEFAULT '',
	user_agent  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX activity_user ON activity(user_id, at);
CREATE INDEX activity_at ON activity(at);
