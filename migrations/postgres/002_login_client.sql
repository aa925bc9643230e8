-- Each login attempt names its client: the client's address (an IPv6 /64)
-- or, for a browser with a device cookie of the account, that device. The
-- throttle counts per account and client, and per account overall.
ALTER TABLE login_attempts ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX login_attempts_client ON login_attempts(address_key, client, attempted_at);
