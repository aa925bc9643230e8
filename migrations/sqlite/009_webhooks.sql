-- The outbox carries webhooks too: channel says where a row goes, 'email'
-- (to recipient, over SMTP) or 'webhook' (a POST to -webhook-url). A
-- webhook row has no user (it outlives the account it describes) and no
-- budget.
ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'email';
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox(channel, next_attempt_at) WHERE status = 'pending';
