-- Where a session was made from: the client's address (an IPv6 client's /64),
-- shown to the person on the account page.
ALTER TABLE tokens ADD COLUMN client_addr TEXT NOT NULL DEFAULT '';
