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

// allowance names one of a mailbox's three send budgets, so that a
// stranger can never stop the emails the owner asks for or must receive:
// what anyone can cause by typing the address, password resets, and what
// only the owner can cause (emailKinds says which kind spends which).
type allowance string

const (
	allowanceStranger allowance = "stranger" // welcome, account exists, activation by resend, someone else's address change
	allowanceReset    allowance = "reset"    // a password reset's email (or, for a pending account, its activation email)
	allowanceOwner    allowance = "owner"    // password changed, the own address's confirmation, address changed, account deleted
)

// budgets are each allowance's emails to one mailbox in any hour and in
// any day.
var budgets = map[allowance]struct{ perHour, perDay int }{
	allowanceStranger: {3, 10},
	allowanceReset:    {3, 10},
	allowanceOwner:    {10, 30},
}

// domainPerHour is how many emails of the stranger's allowance one domain
// receives in any hour, whatever its mailboxes: a domain that delivers
// every address to one inbox (a catch-all, or a provider that ignores more
// than mailboxKey knows) is not flooded through its many addresses. It is
// part of the per-client limiter (store.perDomain): -limiter-enabled=false
// turns it off with the rest, as load tests from one address need.
const domainPerHour = 300

// sendKey is what the sends table counts an email to address by, in
// allowance: the mailbox (mailboxKey), prefixed by the allowance unless it
// is the stranger's (whose keys have no prefix, as before allowances).
func sendKey(a allowance, address string) string {
	if a == allowanceStranger {
		return mailboxKey(address)
	}
	return string(a) + ":" + mailboxKey(address)
}

// domainKey is what the sends table counts address's domain by.
func domainKey(address string) string {
	_, domain, _ := strings.Cut(mailboxKey(address), "@")
	return "domain:" + domain
}

// dotlessDomains are the providers known to deliver a.da@ and ada@ to one
// inbox: their local parts are counted without dots.
var dotlessDomains = map[string]string{"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}

// mailboxKey is what the send budget counts an address by: its mailbox,
// the address lower-cased with any +tag dropped from its local part, so
// that ada+1@example.com and Ada+2@example.com share one budget; and for
// providers that ignore dots (dotlessDomains), without its dots and under
// the provider's one domain, so that a.da@gmail.com and ada@googlemail.com
// share it too.
func mailboxKey(address string) string {
	local, domain, _ := strings.Cut(strings.ToLower(address), "@")
	local, _, _ = strings.Cut(local, "+")
	if d, ok := dotlessDomains[domain]; ok {
		local, domain = strings.ReplaceAll(local, ".", ""), d
	}
	return local + "@" + domain
}

// errOverBudget means the address has had its share of emails for now.
var errOverBudget = errors.New("send budget of the address spent")

// spend takes one email of allowance a from the budget of e's recipient
// (and, for the stranger's, of its domain), in tx: errOverBudget when
// either has none left, and then nothing is spent.
func (st *store) spend(ctx context.Context, tx *sql.Tx, a allowance, address string, now time.Time) error {
	b := budgets[a]
	key := sendKey(a, address)
	var hour, day, domain int
	err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $2),
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $3),
		(SELECT count(*) FROM sends WHERE address_key = $4 AND sent_at > $2)`,
		key, millis(now.Add(-time.Hour)), millis(now.Add(-24*time.Hour)), domainKey(address)).Scan(&hour, &day, &domain)
	switch {
	case err != nil:
		return err
	case hour >= b.perHour || day >= b.perDay || (a == allowanceStranger && st.perDomain > 0 && domain >= st.perDomain):
		return errOverBudget
	}
	if _, err := tx.StmtContext(ctx, st.spendStmt).ExecContext(ctx, key, millis(now)); err != nil {
		return err
	}
	if a == allowanceStranger && st.perDomain > 0 {
		_, err = tx.StmtContext(ctx, st.spendStmt).ExecContext(ctx, domainKey(address), millis(now))
	}
	return err
}

// addressInfo is what a signup needs to know of an address before it
// spends a password hash.
type addressInfo struct {
	activated bool // an activated account has it, or a disabled one: no password to hash
	invited   bool // a pending account has it, invited by the operator
	over      bool // the stranger's allowance of its mailbox (or of its domain) is spent
}

// addressState reads what a signup needs to know of address. One query:
// it runs before every signup.
func (st *store) addressState(ctx context.Context, address string, now time.Time) (addressInfo, error) {
	var state sql.NullInt64
	var hour, day, domain int
	err := st.read.QueryRowContext(ctx, `SELECT (SELECT activated + CASE WHEN invited_at IS NULL THEN 0 ELSE 2 END + CASE WHEN disabled_at IS NULL THEN 0 ELSE 4 END
			FROM users WHERE email_key = $1),
		(SELECT count(*) FROM sends WHERE address_key = $4 AND sent_at > $2),
		(SELECT count(*) FROM sends WHERE address_key = $4 AND sent_at > $3),
		(SELECT count(*) FROM sends WHERE address_key = $5 AND sent_at > $2)`,
		strings.ToLower(address), millis(now.Add(-time.Hour)), millis(now.Add(-24*time.Hour)), mailboxKey(address), domainKey(address)).Scan(&state, &hour, &day, &domain)
	b := budgets[allowanceStranger]
	return addressInfo{
		activated: state.Int64&1 != 0 || state.Int64&4 != 0,
		invited:   state.Int64 == 2,
		over:      hour >= b.perHour || day >= b.perDay || (st.perDomain > 0 && domain >= st.perDomain),
	}, err
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
		if err := capTokens(ctx, tx, u.ID, device.scope); err != nil {
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
