package main

// store_limits.go keeps the per-address limits: the send budget and the login
// throttle, in the database so that restarts and instances share them.

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// The send budget of an address: emails of every kind together.
const (
	budgetPerHour = 3
	budgetPerDay  = 10
)

// errOverBudget means the address has had its share of emails for now.
var errOverBudget = errors.New("send budget of the address spent")

// addressState reports whether address has an activated account, and
// whether it is over its send budget: what a signup needs to know before it
// spends a password hash. One query: it runs before every signup.
func (st *store) addressState(ctx context.Context, address string, now time.Time) (activated, over bool, err error) {
	var act sql.NullInt64
	var hour, day int
	err = st.read.QueryRowContext(ctx, `SELECT (SELECT activated FROM users WHERE email_key = $1),
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $2),
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $3)`,
		strings.ToLower(address), millis(now.Add(-time.Hour)), millis(now.Add(-24*time.Hour))).Scan(&act, &hour, &day)
	return act.Valid && act.Int64 == 1, hour >= budgetPerHour || day >= budgetPerDay, err
}

// The login throttle: at most this many failed attempts per address in the
// window; more are refused until the oldest leaves it.
const (
	maxFailedLogins = 5
	loginWindow     = 15 * time.Minute
)

// errThrottled means an address has had its failed logins for now.
var errThrottled = errors.New("too many failed login attempts")

// beginLogin records a login attempt on address, which counts as failed
// until loginSucceeded clears it (so concurrent guesses cannot overshoot),
// and returns the account of address, or nil. With maxFailedLogins attempts
// already in the window it records nothing and returns errThrottled and
// how long until the oldest leaves the window.
func (st *store) beginLogin(ctx context.Context, address string, now time.Time) (*user, time.Duration, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return nil, 0, err
	}
	key := strings.ToLower(address)
	var n int
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT count(*), min(attempted_at) FROM login_attempts WHERE address_key = $1 AND attempted_at > $2`,
		key, millis(now.Add(-loginWindow))).Scan(&n, &oldest); err != nil {
		return nil, 0, err
	}
	if n >= maxFailedLogins {
		return nil, time.UnixMilli(oldest.Int64).Add(loginWindow).Sub(now), errThrottled
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO login_attempts (address_key, attempted_at) VALUES ($1, $2)`, key, millis(now)); err != nil {
		return nil, 0, err
	}
	u, err := userByAddress(ctx, tx, key)
	if errors.Is(err, errNotFound) {
		u, err = nil, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return u, 0, st.commit(tx)
}

// loginSucceeded clears the failed attempts on u's address and stores a
// bearer token (its hash) for u, valid for authTTL.
func (st *store) loginSucceeded(ctx context.Context, u *user, tokenHash []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_attempts WHERE address_key = $1`, strings.ToLower(u.Email)); err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, tokenHash, u.ID, "authentication", millis(now.Add(authTTL))); err != nil {
		return err
	}
	return st.commit(tx)
}
