-- One row per email queued to an address, for its send budget (at most 3
-- in any hour and 10 in any day). Kept apart from users and the outbox, so
-- that deleting an account does not reset its address's budget.
CREATE TABLE sends (
	address_key TEXT    NOT NULL, -- lower-cased address
	sent_at     INTEGER NOT NULL
);
CREATE INDEX sends_address ON sends(address_key, sent_at);
