-- One row per login attempt on an address that has not (yet) succeeded, for
-- the throttle: at most 5 failed attempts per address in 15 minutes. Keyed
-- by address, whether or not an account has it, so the throttle tells
-- nothing about who has an account.
CREATE TABLE login_attempts (
	address_key  TEXT    NOT NULL, -- lower-cased address
	attempted_at INTEGER NOT NULL
);
CREATE INDEX login_attempts_address ON login_attempts(address_key, attempted_at);
