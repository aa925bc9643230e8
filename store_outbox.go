package main

// store_outbox.go keeps the outbox: queueing a row (an email or a webhook)
// with the change that causes it, claiming, recording each attempt,
// composing afresh, and what `signup outbox` reads.

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"time"
)

// queue inserts row e in tx. An email spends one unit of its allowance of
// its recipient's send budget (errOverBudget when none is left) and stores
// the token its link carries, if any; a webhook spends nothing.
func (st *store) queue(ctx context.Context, tx *sql.Tx, e *outboxRow) error {
	if e.Channel == channelEmail {
		if err := st.spend(ctx, tx, e.allowance, e.Recipient, e.CreatedAt); err != nil {
			return err
		}
	}
	if tok := e.token; tok != nil {
		if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, tok.hash, e.UserID, tok.scope, millis(tok.expiry)); err != nil {
			return err
		}
	}
	return tx.StmtContext(ctx, st.insertRowStmt).QueryRowContext(ctx, e.Channel, e.Kind, userID(e.UserID), millis(e.CreatedAt), e.MessageID,
		e.Recipient, st.sealMessage(e.Message), millis(e.CreatedAt)).Scan(&e.ID)
}

// tell is the tail of every change that tells of itself: it composes the
// email n names (if any) and the webhook event (if any), queues them in tx
// and commits tx. Over the recipient's send budget the change is refused
// with errOverBudget — unless n.skippable: then the email alone is left
// out, and sent reports it.
func (st *store) tell(ctx context.Context, tx *sql.Tx, n notice) (sent bool, err error) {
	e := n.composed
	if e == nil && n.kind != "" {
		if e, err = st.composer.email(n.kind, n.to, n.token, n.now); err != nil {
			return false, err
		}
	}
	if e != nil {
		err = st.queue(ctx, tx, e)
		sent = err == nil
		if errors.Is(err, errOverBudget) && n.skippable {
			err = nil
		}
		if err != nil {
			return false, err
		}
	}
	if n.event != "" {
		ev, err := st.composer.event(n.event, n.about, n.now)
		if err != nil {
			return false, err
		}
		if ev != nil {
			if err := st.queue(ctx, tx, ev); err != nil {
				return false, err
			}
		}
	}
	return sent, st.commit(tx)
}

// notice is what a change tells: an email and a webhook event, each
// optional.
type notice struct {
	kind      emailKind  // the email; "" for none
	to        *user      // its recipient, and whom it is about
	token     string     // the token its link carries, where kind carries one
	composed  *outboxRow // the email, composed already (a signup's, before its transaction): kind is then unused
	skippable bool       // over budget the email is left out rather than the change refused: the inbox took part in it
	event     eventType  // the webhook event; "" for none
	about     *user      // the account the event is about
	now       time.Time
}

// userID is id as the outbox stores it: NULL for none.
func userID(id int64) sql.NullInt64 { return sql.NullInt64{Int64: id, Valid: id != 0} }

// claimDue claims for this instance up to limit pending rows of channel
// ("email" or "webhook") that are due at now and not claimed by another
// deliverer (or whose claim has expired), until now+lease.
func (st *store) claimDue(ctx context.Context, channel string, now time.Time, lease time.Duration, limit int) ([]*outboxRow, error) {
	rows, err := st.claimStmt.QueryContext(ctx, millis(now.Add(lease)), millis(now), millis(now), limit, st.instance, channel)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var claimed []*outboxRow
	for rows.Next() {
		var e outboxRow
		var created int64
		var blob []byte
		var uid sql.NullInt64
		if err := rows.Scan(&e.ID, &e.Kind, &uid, &created, &e.MessageID, &e.Recipient, &blob, &e.Attempts); err != nil {
			return nil, err
		}
		e.UserID, e.Channel = uid.Int64, channel
		e.Message, e.stale = st.openMessage(blob)
		if blob == nil {
			e.stale = errNoMessage
		}
		e.CreatedAt = time.UnixMilli(created).UTC()
		claimed = append(claimed, &e)
	}
	return claimed, rows.Err()
}

// markSent records that the server (SMTP, or the webhook receiver)
// accepted e, and drops its content.
func (st *store) markSent(ctx context.Context, e *outboxRow) error {
	_, err := st.markSentStmt.ExecContext(ctx, e.ID)
	return err
}

// markRetry records a failed attempt at e and when to try again.
func (st *store) markRetry(ctx context.Context, e *outboxRow, next time.Time, lastErr string) error {
	_, err := st.write.ExecContext(ctx,
		`UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, claimed_until = 0, last_error = $2 WHERE id = $3`,
		millis(next), lastErr, e.ID)
	return err
}

// markFailed records that e will never be sent, and drops its content —
// but a webhook's body, which carries no token and cannot be composed
// again: `signup outbox retry` sends it as it was.
func (st *store) markFailed(ctx context.Context, e *outboxRow, lastErr string) error {
	_, err := st.write.ExecContext(ctx,
		`UPDATE outbox SET status = 'failed', message = CASE WHEN channel = 'webhook' THEN message END, attempts = attempts + 1, claimed_until = 0, last_error = $1 WHERE id = $2`,
		lastErr, e.ID)
	return err
}

// release gives up the claim on e without counting an attempt, so that it
// is sent as soon as a deliverer is free (or at the next start).
func (st *store) release(ctx context.Context, e *outboxRow) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE id = $1`, e.ID)
	return err
}

// releaseAllClaims drops every claim: at start-up, claims left by a process
// that crashed or was killed mid-send. Only the holder of an SQLite
// database's lock calls it, so no other process still holds any of them.
func (st *store) releaseAllClaims(ctx context.Context) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE status = 'pending' AND claimed_until > 0`)
	return err
}

// releaseOwnClaims drops this instance's claims on rows of channel: at
// shutdown, so that other instances send what it did not.
func (st *store) releaseOwnClaims(ctx context.Context, channel string) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE claimed_by = $1 AND channel = $2 AND status = 'pending' AND claimed_until > 0`,
		st.instance, channel)
	return err
}

// renewClaims extends this instance's claims on the rows ids to now+lease,
// in one transaction.
func (st *store) renewClaims(ctx context.Context, ids []int64, now time.Time, lease time.Duration) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET claimed_until = $1 WHERE id = $2 AND claimed_by = $3 AND status = 'pending'`,
			millis(now.Add(lease)), id, st.instance); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// outboxCounts returns how many outbox rows (emails and webhooks) are
// pending and how many failed.
func (st *store) outboxCounts(ctx context.Context) (pending, failed int, err error) {
	err = st.read.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM outbox WHERE status = 'pending'),
		(SELECT count(*) FROM outbox WHERE status = 'failed')`).Scan(&pending, &failed)
	return pending, failed, err
}

// pendingByChannel returns how many outbox rows of each channel are
// pending.
func (st *store) pendingByChannel(ctx context.Context) (map[string]int, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT channel, count(*) FROM outbox WHERE status = 'pending' GROUP BY channel`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	pending := map[string]int{}
	for rows.Next() {
		var channel string
		var n int
		if err := rows.Scan(&channel, &n); err != nil {
			return nil, err
		}
		pending[channel] = n
	}
	return pending, rows.Err()
}

// outboxStats is what the outbox holds, as /metrics shows it.
type outboxStats struct {
	pending map[[2]string]int    // by channel and kind label (metricKind)
	oldest  map[string]time.Time // the oldest pending row's time, by channel
	failed  map[string]int       // by channel
}

// outboxStats reads the outbox's pending rows by channel and kind, the
// oldest of each channel, and its failed rows by channel.
func (st *store) outboxStats(ctx context.Context) (outboxStats, error) {
	s := outboxStats{pending: map[[2]string]int{}, oldest: map[string]time.Time{}, failed: map[string]int{}}
	rows, err := st.read.QueryContext(ctx, `SELECT channel, kind, status, count(*), min(created_at) FROM outbox
		WHERE status IN ('pending', 'failed') GROUP BY channel, kind, status`)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var channel, kind, status string
		var n int
		var oldest int64
		if err := rows.Scan(&channel, &kind, &status, &n, &oldest); err != nil {
			return s, err
		}
		if status == "failed" {
			s.failed[channel] += n
			continue
		}
		s.pending[[2]string{channel, metricKind(kind)}] += n
		if t, ok := s.oldest[channel]; !ok || time.UnixMilli(oldest).Before(t) {
			s.oldest[channel] = time.UnixMilli(oldest)
		}
	}
	return s, rows.Err()
}

// nextDue returns when the earliest pending, unclaimed row of channel is
// due, and false if there is none.
func (st *store) nextDue(ctx context.Context, channel string) (time.Time, bool, error) {
	var next sql.NullInt64
	err := st.read.QueryRowContext(ctx,
		`SELECT min(CASE WHEN next_attempt_at > claimed_until THEN next_attempt_at ELSE claimed_until END) FROM outbox WHERE channel = $1 AND status = 'pending'`, channel).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return time.UnixMilli(next.Int64), true, nil
}

// outboxEntry is an outbox row as `signup outbox list` shows it.
type outboxEntry struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"`
	Status      string    `json:"status"`
	Recipient   string    `json:"recipient"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt_at"`
	LastError   string    `json:"last_error"`
}

// listOutbox returns the outbox rows with status (all when empty), oldest
// first; a webhook URL's password shows as xxxxx.
func (st *store) listOutbox(ctx context.Context, status string) ([]outboxEntry, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT id, kind, status, recipient, attempts, created_at, next_attempt_at, last_error
		FROM outbox WHERE $1 = '' OR status = $2 ORDER BY id`, status, status)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []outboxEntry
	for rows.Next() {
		var e outboxEntry
		var created, next int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Status, &e.Recipient, &e.Attempts, &created, &next, &e.LastError); err != nil {
			return nil, err
		}
		e.CreatedAt, e.NextAttempt = time.UnixMilli(created).UTC(), time.UnixMilli(next).UTC()
		if u, err := url.Parse(e.Recipient); err == nil && u.User != nil {
			e.Recipient = u.Redacted() // a webhook URL's password is a secret
		}
		list = append(list, e)
	}
	return list, rows.Err()
}

// errClaimed means an outbox row is being sent right now.
var errClaimed = errors.New("being sent right now")

// outboxUser returns the kind of outbox row id and whom it goes to: its
// user, addressed as the row is (an address change's emails go to either
// address), or, for a row that outlived its account, just the address.
func (st *store) outboxUser(ctx context.Context, id int64) (string, *user, error) {
	var kind, recipient string
	var uid sql.NullInt64
	err := st.read.QueryRowContext(ctx, `SELECT kind, user_id, recipient FROM outbox WHERE id = $1`, id).Scan(&kind, &uid, &recipient)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, errNotFound
	}
	if err != nil {
		return "", nil, err
	}
	if !uid.Valid {
		return kind, &user{Email: recipient}, nil
	}
	u, err := scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, uid.Int64))
	if err != nil {
		return "", nil, err
	}
	switch kind {
	case string(kindConfirmOld):
		u.oldEmail = u.Email
		err = st.read.QueryRowContext(ctx, `SELECT new_email FROM email_changes WHERE user_id = $1`, u.ID).Scan(&u.newEmail)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil, errNotFound // the change is over: nothing to confirm
		}
	case string(kindConfirmNew):
		u.oldEmail, u.newEmail, u.Email = u.Email, recipient, recipient
	case string(kindEmailChanged):
		u.oldEmail, u.newEmail, u.Email = recipient, u.Email, recipient
	}
	return kind, u, err
}

// errNoMessage means a pending row holds no composed message: `signup
// outbox retry` queued it again, for the service to compose afresh.
var errNoMessage = errors.New("queued again to be composed afresh")

// markForRetry queues outbox row id again, due now, with its attempts and
// the 72-hour window starting over and its message dropped: the serving
// process composes it afresh (with a new token where its kind carries one)
// when it claims it, with its own configuration, so that however `signup
// outbox retry` was started the email is the service's own. A webhook
// keeps its body, and goes again as it was (the same webhook-id). It
// returns the recipient, errNotFound for no such row, errClaimed for one
// being sent.
func (st *store) markForRetry(ctx context.Context, id int64, now time.Time) (string, error) {
	var to string
	err := st.write.QueryRowContext(ctx, `UPDATE outbox SET status = 'pending', message = CASE WHEN channel = 'webhook' THEN message END, created_at = $2, next_attempt_at = $2,
		attempts = 0, claimed_until = 0, last_error = ''
		WHERE id = $1 AND NOT (status = 'pending' AND claimed_until > $2) RETURNING recipient`, id, millis(now)).Scan(&to)
	if !errors.Is(err, sql.ErrNoRows) {
		return to, err
	}
	if err := st.read.QueryRowContext(ctx, `SELECT recipient FROM outbox WHERE id = $1`, id).Scan(&to); errors.Is(err, sql.ErrNoRows) {
		return "", errNotFound
	}
	return "", errClaimed
}

// requeue replaces outbox row e.ID with e, composed afresh, due now, with
// its attempts and the 72-hour window starting over, and its claim
// dropped. It takes a row claimed by no one, or by this instance (the
// deliverer composing a row it holds); errClaimed for another's live
// claim. The new token it carries, if its kind carries one, replaces the
// user's earlier ones.
func (st *store) requeue(ctx context.Context, e *outboxRow) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'pending', message = $1, message_id = $2, created_at = $3,
		next_attempt_at = $4, attempts = 0, claimed_until = 0, last_error = ''
		WHERE id = $5 AND (claimed_by = $7 OR NOT (status = 'pending' AND claimed_until > $6))`,
		st.sealMessage(e.Message), e.MessageID, millis(e.CreatedAt), millis(e.CreatedAt), e.ID, millis(e.CreatedAt), st.instance)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errClaimed
	}
	if tok := e.token; tok != nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2`, e.UserID, tok.scope); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, tok.hash, e.UserID, tok.scope, millis(tok.expiry)); err != nil {
			return err
		}
	}
	return st.commit(tx)
}

// recompose composes outbox row id afresh, with a new token where its
// kind carries one, and queues it to be sent now (requeue). It returns the
// recipient; errNotFound when the row, or the account or change it is
// about, is gone.
func (st *store) recompose(ctx context.Context, id int64, now time.Time) (string, error) {
	kind, u, err := st.outboxUser(ctx, id)
	if err != nil {
		return "", err
	}
	token, _ := newToken()
	e, err := st.composer.email(emailKind(kind), u, token, now)
	if err != nil {
		return "", err
	}
	e.ID = id
	return u.Email, st.requeue(ctx, e)
}
