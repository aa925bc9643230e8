package main

// store_users.go keeps accounts and their tokens.

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// user is an account, as the API shows it.
type user struct {
	ID           int64     `json:"id"`
	CreatedAt    time.Time `json:"created_at"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	Activated    bool      `json:"activated"`
	passwordHash []byte
	language     string    // of the emails about the account; "" is -default-language
	disabledAt   time.Time // when the operator disabled it; zero if not
	invitedAt    time.Time // when the operator invited its address; zero if not

	oldEmail, newEmail string      // an address change's two addresses, for the emails about it
	returnTo           string      // the page asked for before signing up, for the welcome email's link
	passkey            *newPasskey // a signup's passkey, in place of a password
}

// HasPassword reports whether the account has a password: one that signed
// up with a passkey, or was invited, may have none.
func (u *user) HasPassword() bool { return len(u.passwordHash) > 0 }

// userColumns are the columns scanUser reads, in its order.
const userColumns = `id, created_at, name, email, activated, password_hash, language, disabled_at, invited_at`

// rowQuerier reads one row: the read pool or a transaction.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// userByAddress returns, through q, the account of address regardless of
// case, or errNotFound.
func userByAddress(ctx context.Context, q rowQuerier, address string) (*user, error) {
	return scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_key = $1`, strings.ToLower(address)))
}

// userByID returns the account with this id, or errNotFound.
func (st *store) userByID(ctx context.Context, id int64) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
}

// scanUser reads a row of userColumns, or returns errNotFound for none.
func scanUser(row interface{ Scan(...any) error }) (*user, error) {
	var u user
	var created int64
	var disabled, invited sql.NullInt64
	err := row.Scan(&u.ID, &created, &u.Name, &u.Email, &u.Activated, &u.passwordHash, &u.language, &disabled, &invited)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	if u.passwordHash == nil {
		u.passwordHash = []byte{} // no password: compared as itself, never as NULL
	}
	if disabled.Valid {
		u.disabledAt = time.UnixMilli(disabled.Int64).UTC()
	}
	if invited.Valid {
		u.invitedAt = time.UnixMilli(invited.Int64).UTC()
	}
	return &u, nil
}

// signup does, in one transaction, what a signup does to the address of u,
// by the state of that address:
//   - new: u is created, with the welcome email (composed already, its
//     token's hash in it) and the user.created event;
//   - pending: that account takes u's name, password hash and time, its
//     earlier tokens and passkeys are deleted, and it gets the welcome email;
//   - activated: nothing changes; its owner gets the account-exists email.
//
// It returns the kind of email queued. Each counts against the address's
// send budget: over it, nothing changes and it returns errOverBudget, as it
// does when u has no password hash (the caller saw no need for one) but the
// account turns out to need one.
func (st *store) signup(ctx context.Context, u *user, welcome *outboxRow) (emailKind, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, u.Email); err != nil {
		return "", err
	}
	// Most signups are for a new address: try that first.
	var existing *user
	inserted := false
	if u.passwordHash != nil {
		err := tx.StmtContext(ctx, st.insertNewUserStmt).QueryRowContext(ctx, millis(u.CreatedAt), u.Name, u.Email, strings.ToLower(u.Email), u.passwordHash, u.language).Scan(&u.ID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", err
		}
		inserted = err == nil
	}
	if !inserted {
		existing, err = scanUser(tx.StmtContext(ctx, st.userByKeyStmt).QueryRowContext(ctx, strings.ToLower(u.Email)))
		if err != nil && !errors.Is(err, errNotFound) {
			return "", err
		}
	}
	switch {
	case inserted:
	case existing != nil && (existing.Activated || !existing.disabledAt.IsZero()):
		_, err := st.tell(ctx, tx, notice{kind: kindAccountExists, to: existing, now: welcome.CreatedAt})
		return kindAccountExists, err
	case u.passwordHash == nil:
		return "", errOverBudget
	case existing != nil:
		u.ID = existing.ID
		if _, err := tx.ExecContext(ctx, `UPDATE users SET name = $1, password_hash = $2, created_at = $3, language = $4 WHERE id = $5`,
			u.Name, u.passwordHash, millis(u.CreatedAt), u.language, u.ID); err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, u.ID); err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM passkeys WHERE user_id = $1`, u.ID); err != nil {
			return "", err
		}
	default:
		return "", errOverBudget // no hash for an account that needs one (see above)
	}
	if u.passkey != nil { // a passkey signup's, which activates the account (with the link) or is replaced
		if err := insertPasskey(ctx, tx, u.ID, u.passkey, u.CreatedAt); err != nil {
			return "", err
		}
	}
	if err := recordActivity(ctx, tx, u.ID, activitySignup, u.CreatedAt, "", ""); err != nil {
		return "", err
	}
	welcome.UserID = u.ID
	n := notice{composed: welcome, now: u.CreatedAt}
	if inserted {
		n.event, n.about = eventCreated, u
	}
	_, err = st.tell(ctx, tx, n)
	return kindWelcome, err
}

// resendActivation gives the account of address, if it is waiting for
// activation, a new activation link (carrying token) in place of its
// earlier ones, in one transaction. It returns errNotFound for any other
// address, and errOverBudget when the address has had its share.
func (st *store) resendActivation(ctx context.Context, address, token string, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return err
	}
	u, err := userByAddress(ctx, tx, address)
	if err == nil && (u.Activated || !u.disabledAt.IsZero()) {
		err = errNotFound
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = 'activation'`, u.ID); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindActivation, to: u, token: token, now: now})
	return err
}

// activate marks as activated the user holding the unexpired activation
// token with this hash, with passwordHash as its password unless it is nil
// (the signup's password was typed, or its passkey used) — or, with key,
// that new passkey and no password. A credential chosen by the link's
// holder (a password or key) replaces the signup's passkeys: whoever
// activates ends with the credential they hold. It deletes all of that
// user's activation tokens and, when l is set, logs the user in. It
// returns errNotFound when no such token exists.
func (st *store) activate(ctx context.Context, tokenHash, passwordHash []byte, key *newPasskey, l *newSession, now time.Time) (*user, error) {
	if key != nil {
		passwordHash = []byte{}
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx,
		`UPDATE users SET activated = 1, password_hash = coalesce($3, password_hash)
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)
		RETURNING `+userColumns, tokenHash, millis(now), passwordHash))
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = 'activation'`, u.ID); err != nil {
		return nil, err
	}
	if passwordHash != nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM passkeys WHERE user_id = $1`, u.ID); err != nil {
			return nil, err
		}
	}
	if key != nil {
		if err := insertPasskey(ctx, tx, u.ID, key, now); err != nil {
			return nil, err
		}
	}
	if err := recordActivity(ctx, tx, u.ID, activityActivated, now, "", ""); err != nil {
		return nil, err
	}
	if l != nil {
		if err := insertLogin(ctx, tx, u.ID, u.passwordHash, l, now); err != nil {
			return nil, err
		}
	}
	_, err = st.tell(ctx, tx, notice{event: eventActivated, about: u, now: now})
	return u, err
}

// cancelSignup deletes the account, not activated yet, that holds the
// unexpired activation token with this hash, with its tokens and emails.
// It returns errNotFound when there is no such account.
func (st *store) cancelSignup(ctx context.Context, tokenHash []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx, `DELETE FROM users
		WHERE activated = 0 AND id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)
		RETURNING `+userColumns, tokenHash, millis(now)))
	if err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{event: eventDeleted, about: u, now: now})
	return err
}

// pendingUser returns the user, not activated yet, that holds the unexpired
// activation token with this hash, or errNotFound.
func (st *store) pendingUser(ctx context.Context, tokenHash []byte, now time.Time) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE activated = 0 AND id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)`,
		tokenHash, millis(now)))
}

// userByToken returns the user holding the unexpired token of scope with
// this hash, or errNotFound.
func (st *store) userByToken(ctx context.Context, tokenHash []byte, scope string, now time.Time) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = $2 AND expiry > $3)`, tokenHash, scope, millis(now)))
}

// logout ends the session (scope "session" or "authentication") with
// this hash, and records it in its account's activity.
func (st *store) logout(ctx context.Context, tokenHash []byte, scope string, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var id int64
	err = tx.QueryRowContext(ctx, `DELETE FROM tokens WHERE hash = $1 AND scope = $2 RETURNING user_id`, tokenHash, scope).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // ended already
	}
	if err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, id, activityLogout, now, "", ""); err != nil {
		return err
	}
	if err := endAppTokens(ctx, tx, id); err != nil { // a logout ends the apps' tokens too
		return err
	}
	return st.commit(tx)
}

// requestPasswordReset queues, in one transaction, what a password reset
// for address sends: for an activated account, the password-reset email
// (its link carrying token) in place of its earlier ones; for a pending
// one, the activation email, as resendActivation does. It returns the kind
// queued, errNotFound for an unknown address, errOverBudget over the
// budget.
func (st *store) requestPasswordReset(ctx context.Context, address, token string, now time.Time) (emailKind, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return "", err
	}
	u, err := userByAddress(ctx, tx, address)
	if err == nil && !u.disabledAt.IsZero() {
		err = errNotFound // a disabled account gets no link: it could not log in with it
	}
	if err != nil {
		return "", err
	}
	kind := kindPasswordReset
	if !u.Activated {
		kind = kindActivation
	}
	e, err := st.composer.email(kind, u, token, now)
	if err != nil {
		return "", err
	}
	e.allowance = allowanceReset // whatever its kind: anyone can ask, and it lands in the owner's inbox
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2`, u.ID, e.token.scope); err != nil {
		return "", err
	}
	_, err = st.tell(ctx, tx, notice{composed: e, now: now})
	return kind, err
}

// resetPassword sets the password hash of the user holding the
// unexpired password-reset token with this hash, marks the account
// activated (the reset proved the inbox), deletes every token of the user
// (reset, activation, sessions: every login) but its device tokens, which
// are throttle exemptions and no credential; clears the failed logins on
// its address, so that the owner, proved by the inbox, gets in however
// many guesses strangers made; stores device, when set, as the device
// token of the browser that reset; and queues the password-changed email —
// over budget the password is set all the same, and it reports that the
// email was not queued. It returns errNotFound for no such token.
func (st *store) resetPassword(ctx context.Context, tokenHash, passwordHash []byte, device *linkToken, now time.Time) (*user, bool, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx, `UPDATE users SET password_hash = $1, activated = 1
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $2 AND scope = 'password-reset' AND expiry > $3)
		RETURNING `+userColumns, passwordHash, tokenHash, millis(now)))
	if err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope <> 'device'`, u.ID); err != nil {
		return nil, false, err
	}
	if err := endAppTokens(ctx, tx, u.ID); err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM email_changes WHERE user_id = $1`, u.ID); err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_attempts WHERE address_key = $1`, strings.ToLower(u.Email)); err != nil {
		return nil, false, err
	}
	if err := recordActivity(ctx, tx, u.ID, activityPasswordChanged, now, "", ""); err != nil {
		return nil, false, err
	}
	if device != nil {
		if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, device.hash, u.ID, device.scope, millis(device.expiry)); err != nil {
			return nil, false, err
		}
		if err := capTokens(ctx, tx, u.ID, device.scope); err != nil {
			return nil, false, err
		}
	}
	sent, err := st.tell(ctx, tx, notice{kind: kindPasswordChanged, to: u, skippable: true, event: eventPasswordChanged, about: u, now: now})
	return u, sent, err
}

// purgeExpiredTokens deletes the tokens that expired before now, and the
// send-budget and login-attempt records that no window counts any more.
func (st *store) purgeExpiredTokens(ctx context.Context, now time.Time) (int64, error) {
	if _, err := st.write.ExecContext(ctx, `DELETE FROM sends WHERE sent_at <= $1`, millis(now.Add(-24*time.Hour))); err != nil {
		return 0, err
	}
	if _, err := st.write.ExecContext(ctx, `DELETE FROM login_attempts WHERE attempted_at <= $1`, millis(now.Add(-accountWindow))); err != nil {
		return 0, err
	}
	if _, err := st.write.ExecContext(ctx, `DELETE FROM email_changes WHERE expiry <= $1`, millis(now)); err != nil {
		return 0, err
	}
	if _, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE scope = 'session' AND last_used_at <= $1`, millis(now.Add(-sessionIdle))); err != nil {
		return 0, err
	}
	res, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE expiry <= $1`, millis(now))
	st.cache.forget()
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
