-- Tokens and send-budget records each in one b-tree instead of a table and
-- the index of its key: a page less to write for each token and each email
-- queued (the WAL bytes of a signup are what bounds signups per second).
CREATE TABLE tokens_new (
	hash    BLOB    PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	scope   TEXT    NOT NULL,
	expiry  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO tokens_new SELECT hash, user_id, scope, expiry FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expiry ON tokens(expiry);

CREATE TABLE sends_new (
	address_key TEXT    NOT NULL,
	sent_at     INTEGER NOT NULL,
	n           INTEGER NOT NULL DEFAULT (random()), -- two sends in one millisecond
	PRIMARY KEY (address_key, sent_at, n)
) WITHOUT ROWID;
INSERT INTO sends_new (address_key, sent_at, n) SELECT address_key, sent_at, rowid FROM sends;
DROP TABLE sends;
ALTER TABLE sends_new RENAME TO sends;
