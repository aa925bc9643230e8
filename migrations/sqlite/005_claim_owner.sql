-- Which process holds a claim on an email, so that each releases only its own.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
