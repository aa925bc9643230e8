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

// mailboxKey is what the send budget counts an address by: its mailbox,
// the address lower-cased with any +tag dropped from its local part, so
// that ada+1@example.com and Ada+2@example.com share one budget.
func mailboxKey(address string) string {
	local, domain, _ := strings.Cut(strings.ToLower(address), "@")
	local, _, _ = strings.Cut(local, "+")
	return local + "@" + domain
}

// errOverBudget means the address has had its share of emails for now.
var errOverBudget = errors.New("send budget of the address spent")

// addressState reports whether address has an activated account, and
// whether it is over its send budget: what a signup needs to know before it
// spends a password hash. One query: it runs before every signup.
func (st *store) addressState(ctx context.Context, address string, now time.Time) (activated, over bool, err error) {
	var act sql.NullInt64
	var hour, day int
	err = st.read.QueryRowContext(ctx, `SELECT (SELECT activated FROM users WHERE email_key = $1),
		(SELECT count(*) FROM sends WHERE address_key = $4 AND sent_at > $2),
		(SELECT count(*) FROM sends WHERE address_key = $4 AND sent_at > $3)`,
		strings.ToLower(address), millis(now.Add(-time.Hour)), millis(now.Add(-24*time.Hour)), mailboxKey(address)).Scan(&act, &hour, &day)
	return act.Valid && act.Int64 == 1, hour >= budgetPerHour || day >= budgetPerDay, err
}

// The login throttle: at most maxFailedLogins failed attempts on an
// account from one client in loginWindow, and maxAccountFailures from all
// clients in accountWindow (a browser with the account's device cookie is
// held to its own maxFailedLogins only). More are refused until the oldest
// leaves the window. It is keyed by address, whether or not an account has
// it, so it tells nothing about who has an account.
const (
	maxFailedLogins    = 5
	loginWindow        = 15 * time.Minute
	maxAccountFailures = 50
	accountWindow      = time.Hour
)

// errThrottled means a client, or every client, has had its failed logins
// on an address for now.
var errThrottled = errors.New("too many failed login attempts")

// beginLogin records a login attempt on address from client, which counts
// as failed until loginSucceeded clears it (so concurrent guesses cannot
// overshoot), and returns the account of address, or nil. When client has
// maxFailedLogins attempts in loginWindow, or — unless device (client is a
// device of this account) — the address has maxAccountFailures in
// accountWindow, it records nothing and returns errThrottled and how long
// until the oldest leaves its window.
func (st *store) beginLogin(ctx context.Context, address, client string, device bool, now time.Time) (*user, time.Duration, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return nil, 0, err
	}
	key := strings.ToLower(address)
	var mine, all int
	var mineOldest, allOldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM login_attempts WHERE address_key = $1 AND client = $2 AND attempted_at > $3),
		(SELECT min(attempted_at) FROM login_attempts WHERE address_key = $1 AND client = $2 AND attempted_at > $3),
		(SELECT count(*) FROM login_attempts WHERE address_key = $1 AND attempted_at > $4),
		(SELECT min(attempted_at) FROM login_attempts WHERE address_key = $1 AND attempted_at > $4)`,
		key, client, millis(now.Add(-loginWindow)), millis(now.Add(-accountWindow))).Scan(&mine, &mineOldest, &all, &allOldest); err != nil {
		return nil, 0, err
	}
	switch {
	case mine >= maxFailedLogins:
		return nil, time.UnixMilli(mineOldest.Int64).Add(loginWindow).Sub(now), errThrottled
	case !device && all >= maxAccountFailures:
		return nil, time.UnixMilli(allOldest.Int64).Add(accountWindow).Sub(now), errThrottled
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO login_attempts (address_key, attempted_at, client) VALUES ($1, $2, $3)`, key, millis(now), client); err != nil {
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

// loginSucceeded clears client's failed attempts on u's address (and only
// its own), and stores the session l for u and, when device is set, a
// device token — but only if checked, the password hash the
// login was compared with, is still the account's: a password changed (a
// reset, say) while the login was being checked leaves nothing behind, and
// errNotFound.
func (st *store) loginSucceeded(ctx context.Context, u *user, client string, checked []byte, l *newSession, device *linkToken, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := clearAttempts(ctx, tx, u.Email, client); err != nil {
		return err
	}
	if err := insertLogin(ctx, tx, u.ID, checked, l, now); err != nil {
		return err
	}
	if device != nil {
		if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, device.hash, u.ID, device.scope, millis(device.expiry)); err != nil {
			return err
		}
	}
	return st.commit(tx)
}

// clearAttempts forgets client's failed attempts on address: the password
// was right.
func clearAttempts(ctx context.Context, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, address, client string) error {
	_, err := q.ExecContext(ctx, `DELETE FROM login_attempts WHERE address_key = $1 AND client = $2`, strings.ToLower(address), client)
	return err
}

// passwordChecked forgets client's failed attempts on address after the
// account's password was typed right (to change the account).
func (st *store) passwordChecked(ctx context.Context, address, client string) error {
	return clearAttempts(ctx, st.write, address, client)
}
