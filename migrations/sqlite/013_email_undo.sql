-- The way back from an address change: the old address, which the link in
-- the "email changed" email may give the account back, until it expires.
CREATE TABLE email_undos (
	user_id   INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	old_email TEXT    NOT NULL,
	expiry    INTEGER NOT NULL
);
