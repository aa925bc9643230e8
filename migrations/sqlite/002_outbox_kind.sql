-- What each email is, so that an operator's retry can compose it afresh.
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'welcome';
