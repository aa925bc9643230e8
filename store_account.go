package main

// store_account.go keeps what a logged-in person does to their account:
// a new password, an address change confirmed by both addresses, and the
// account's deletion; each with its email, in the same transaction.

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// errCurrentOverBudget means an address change was refused by the budget
// of the account's own address: nothing changed.
var errCurrentOverBudget = errors.New("send budget of the current address spent")

// errAddressTaken means an address change cannot complete: the new address
// has an account now.
var errAddressTaken = errors.New("the new address has an account")

// changePassword gives u the password hash newHash, if checked (the hash
// the current password was compared with) is still its own, ends every
// other session and token of u (all but the session with hash keep, when
// set, and its device tokens: throttle exemptions, no credential), and queues the password-changed email and event, dated now. It
// returns errNotFound when the password changed meanwhile, errOverBudget
// (nothing changed) when the address's budget has no room for the email.
func (st *store) changePassword(ctx context.Context, u *user, checked, newHash, keep []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, newHash, u.ID, checked)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	if keep == nil {
		keep = []byte{} // a hash no token has
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND hash <> $2 AND scope <> 'device'`, u.ID, keep); err != nil {
		return err
	}
	if err := endAppTokens(ctx, tx, u.ID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM email_changes WHERE user_id = $1`, u.ID); err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, u.ID, activityPasswordChanged, now, "", ""); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindPasswordChanged, to: u, event: eventPasswordChanged, about: u, now: now})
	return err
}

// requestEmailChange starts moving u to newAddress, if checked is still
// its password hash, in place of any change it had waiting: a confirmation
// link (carrying tokenOld) to u's address and one (tokenNew) to
// newAddress. When newAddress has an activated account, its owner gets the account-exists
// email instead of a link, and the change can never complete. Over the
// owner's allowance of u's address nothing changes and it returns
// errCurrentOverBudget; over newAddress's, only newAddress's email is left
// out (sentNew false): the change and u's own email stand.
func (st *store) requestEmailChange(ctx context.Context, u *user, newAddress string, checked []byte, tokenOld, tokenNew string, now time.Time) (sentNew bool, err error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, newAddress); err != nil {
		return false, err
	}
	var same int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE id = $1 AND password_hash = $2`, u.ID, checked).Scan(&same); err != nil {
		return false, err
	}
	if same == 0 {
		return false, errNotFound
	}
	owner, err := userByAddress(ctx, tx, newAddress)
	if err != nil && !errors.Is(err, errNotFound) {
		return false, err
	}
	taken := owner != nil && owner.Activated
	from := *u
	from.oldEmail, from.newEmail = u.Email, newAddress
	toOld, err := st.composer.email(kindConfirmOld, &from, tokenOld, now)
	if err != nil {
		return false, err
	}
	var toNew *outboxRow
	if taken {
		toNew, err = st.composer.email(kindAccountExists, owner, "", now)
	} else {
		to := from
		to.Email = newAddress
		toNew, err = st.composer.email(kindConfirmNew, &to, tokenNew, now)
	}
	if err != nil {
		return false, err
	}
	if err := endEmailChange(ctx, tx, u.ID); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO email_changes (user_id, new_email, taken, expiry) VALUES ($1, $2, $3, $4)`,
		u.ID, newAddress, boolInt(taken), millis(toOld.token.expiry)); err != nil {
		return false, err
	}
	if err := st.queue(ctx, tx, toOld); errors.Is(err, errOverBudget) {
		return false, errCurrentOverBudget
	} else if err != nil {
		return false, err
	}
	// Over the new address's budget only its email is left out: nothing
	// about another address changes what happens to the requester's own.
	return st.tell(ctx, tx, notice{composed: toNew, skippable: true, now: now})
}

// emailChange is an address change waiting for its confirmations, as its
// page shows it.
type emailChange struct {
	user               *user
	oldEmail, newEmail string
	half               string // which address the token is of: "old" or "new"
	confirmed          bool   // that half is confirmed already
}

// emailChangeByToken returns the change that the unexpired confirmation
// token with this hash is for, or errNotFound.
func (st *store) emailChangeByToken(ctx context.Context, tokenHash []byte, now time.Time) (*emailChange, error) {
	var c emailChange
	var scope string
	var id int64
	var oldDone, newDone bool
	err := st.read.QueryRowContext(ctx, `SELECT t.scope, t.user_id, c.new_email, c.old_confirmed, c.new_confirmed
		FROM tokens t JOIN email_changes c ON c.user_id = t.user_id
		WHERE t.hash = $1 AND t.scope IN ('email-change-old', 'email-change-new') AND t.expiry > $2 AND c.expiry > $2`,
		tokenHash, millis(now)).Scan(&scope, &id, &c.newEmail, &oldDone, &newDone)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	if c.user, err = st.userByID(ctx, id); err != nil {
		return nil, err
	}
	c.oldEmail = c.user.Email
	c.half, c.confirmed = strings.TrimPrefix(scope, "email-change-"), oldDone
	if c.half == "new" {
		c.confirmed = newDone
	}
	return &c, nil
}

// confirmEmailChange confirms the half of an address change that the
// unexpired token with this hash is for (once: the token stays good for
// cancelling the change until it ends). When both halves are confirmed
// the account takes the new address (a pending account that has it is
// deleted: the inbox's owner confirmed) and the old address gets the
// email-changed email and the user.email_changed event; it reports whether
// that happened, and whether the email was queued (over the old address's
// budget it is not). errNotFound for no such token; errAddressTaken, with the change ended, when the new
// address has an activated account by now.
func (st *store) confirmEmailChange(ctx context.Context, tokenHash []byte, now time.Time) (done, sent bool, err error) {
	c, err := st.emailChangeByToken(ctx, tokenHash, now)
	if err != nil {
		return false, false, err
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return false, false, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, c.newEmail); err != nil {
		return false, false, err
	}
	// The link stays good until the change ends, so that a half confirmed
	// can still cancel; checked in the transaction, so that a change that
	// ended meanwhile (the other half completed it, or a cancel) is not
	// confirmed.
	if err := changeTokenLive(ctx, tx, tokenHash, c.half, now); err != nil {
		return false, false, err
	}
	// A half confirmed already is not confirmed again (errNotFound): its
	// link is good for cancelling only.
	var oldDone, newDone, taken bool
	err = tx.QueryRowContext(ctx, `UPDATE email_changes SET old_confirmed = CASE WHEN $2 = 1 THEN 1 ELSE old_confirmed END,
		new_confirmed = CASE WHEN $3 = 1 THEN 1 ELSE new_confirmed END
		WHERE user_id = $1 AND (CASE WHEN $2 = 1 THEN old_confirmed ELSE new_confirmed END) = 0
		RETURNING old_confirmed > 0, new_confirmed > 0, taken > 0`,
		c.user.ID, boolInt(c.half == "old"), boolInt(c.half == "new")).Scan(&oldDone, &newDone, &taken)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, errNotFound
	}
	if err != nil {
		return false, false, err
	}
	if !oldDone || !newDone || taken {
		return false, false, st.commit(tx)
	}
	if err := endEmailChange(ctx, tx, c.user.ID); err != nil {
		return false, false, err
	}
	// A reset or activation link sent to the old address dies with it.
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope IN ('password-reset', 'activation')`, c.user.ID); err != nil {
		return false, false, err
	}
	owner, err := userByAddress(ctx, tx, c.newEmail)
	switch {
	case err == nil && owner.Activated:
		if err := st.commit(tx); err != nil {
			return false, false, err
		}
		return false, false, errAddressTaken
	case err == nil:
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, owner.ID); err != nil {
			return false, false, err
		}
	case !errors.Is(err, errNotFound):
		return false, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE users SET email = $1, email_key = $2 WHERE id = $3`, c.newEmail, strings.ToLower(c.newEmail), c.user.ID); err != nil {
		return false, false, err
	}
	old := *c.user
	old.oldEmail, old.newEmail = c.oldEmail, c.newEmail
	moved := *c.user
	moved.Email = c.newEmail
	// The old address's way back: the notice's link gives the account its
	// old address back until it expires (undoEmailChange).
	token, _ := newToken()
	e, err := st.composer.email(kindEmailChanged, &old, token, now)
	if err != nil {
		return false, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2`, c.user.ID, e.token.scope); err != nil {
		return false, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM email_undos WHERE user_id = $1`, c.user.ID); err != nil {
		return false, false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO email_undos (user_id, old_email, expiry) VALUES ($1, $2, $3)`,
		c.user.ID, c.oldEmail, millis(e.token.expiry)); err != nil {
		return false, false, err
	}
	if err := recordActivity(ctx, tx, c.user.ID, activityEmailChanged, now, "", ""); err != nil {
		return false, false, err
	}
	sent, err = st.tell(ctx, tx, notice{composed: e, skippable: true, event: eventEmailChanged, about: &moved, now: now})
	return err == nil, sent, err
}

// emailUndoByToken returns the account that the unexpired link of an
// "email changed" email with this hash may give its old address back, and
// that address; errNotFound for no such link.
func (st *store) emailUndoByToken(ctx context.Context, tokenHash []byte, now time.Time) (*user, string, error) {
	var id int64
	var old string
	err := st.read.QueryRowContext(ctx, `SELECT u.user_id, u.old_email FROM email_undos u JOIN tokens t ON t.user_id = u.user_id
		WHERE t.hash = $1 AND t.scope = 'email-undo' AND t.expiry > $2 AND u.expiry > $2`, tokenHash, millis(now)).Scan(&id, &old)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", errNotFound
	}
	if err != nil {
		return nil, "", err
	}
	u, err := st.userByID(ctx, id)
	return u, old, err
}

// undoEmailChange gives the account that the unexpired link with this hash
// is for its old address back — the way out of a change its owner did not
// make — and ends every session and token of it but its device tokens, so
// that whoever changed it is out; the person then sets a new password by a
// reset from the old address. A pending account that took the old address
// meanwhile is deleted (the link proves the inbox); an activated one holds
// it for good (errAddressTaken). It returns the address given back, or
// errNotFound for no such link.
func (st *store) undoEmailChange(ctx context.Context, tokenHash []byte, now time.Time) (string, error) {
	u, old, err := st.emailUndoByToken(ctx, tokenHash, now)
	if err != nil {
		return "", err
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, old); err != nil {
		return "", err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE hash = $1 AND scope = 'email-undo' AND expiry > $2`, tokenHash, millis(now))
	if err != nil {
		return "", err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", errNotFound // used meanwhile
	}
	owner, err := userByAddress(ctx, tx, old)
	switch {
	case err == nil && owner.ID != u.ID && owner.Activated:
		return "", errAddressTaken
	case err == nil && owner.ID != u.ID:
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, owner.ID); err != nil {
			return "", err
		}
	case err != nil && !errors.Is(err, errNotFound):
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE users SET email = $1, email_key = $2 WHERE id = $3`, old, strings.ToLower(old), u.ID); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope <> 'device'`, u.ID); err != nil {
		return "", err
	}
	if err := endAppTokens(ctx, tx, u.ID); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM email_undos WHERE user_id = $1`, u.ID); err != nil {
		return "", err
	}
	if err := endEmailChange(ctx, tx, u.ID); err != nil {
		return "", err
	}
	if err := recordActivity(ctx, tx, u.ID, activityEmailChanged, now, "", ""); err != nil {
		return "", err
	}
	back := *u
	back.Email = old
	_, err = st.tell(ctx, tx, notice{event: eventEmailChanged, about: &back, now: now})
	return old, err
}

// boolInt is b as the databases store it.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cancelEmailChange ends the address change that the unexpired token with
// this hash is for, for both addresses. It returns errNotFound for no such
// token.
func (st *store) cancelEmailChange(ctx context.Context, tokenHash []byte, now time.Time) error {
	c, err := st.emailChangeByToken(ctx, tokenHash, now)
	if err != nil {
		return err
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, c.newEmail); err != nil {
		return err
	}
	// The change may have ended since it was read: completed by the other
	// half's confirmation, which a cancel must not claim to undo.
	if err := changeTokenLive(ctx, tx, tokenHash, c.half, now); err != nil {
		return err
	}
	if err := endEmailChange(ctx, tx, c.user.ID); err != nil {
		return err
	}
	return st.commit(tx)
}

// changeTokenLive reports errNotFound unless the confirmation token of
// half ("old" or "new") with this hash is still good, through tx.
func changeTokenLive(ctx context.Context, tx *sql.Tx, tokenHash []byte, half string, now time.Time) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tokens WHERE hash = $1 AND scope = $2 AND expiry > $3`,
		tokenHash, "email-change-"+half, millis(now)).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return errNotFound
	}
	return nil
}

// endEmailChange deletes, through tx, the address change of user id and
// both its tokens.
func endEmailChange(ctx context.Context, tx *sql.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope IN ('email-change-old', 'email-change-new')`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM email_changes WHERE user_id = $1`, id)
	return err
}

// deleteAccount deletes u, if checked is still its password hash, with
// everything of it (tokens, sessions, pending emails, an address change:
// the schema's cascades), and queues the account-deleted email, which
// outlives it. The send-budget and login-attempt records stay: they are
// the address's. It returns errNotFound when the password changed
// meanwhile, errOverBudget (nothing deleted) when the address's budget has
// no room for the email.
func (st *store) deleteAccount(ctx context.Context, u *user, checked []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := changeOne(ctx, tx, `DELETE FROM users WHERE id = $1 AND password_hash = $2`, u.ID, checked); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindAccountDeleted, to: &user{Email: u.Email, language: u.language}, event: eventDeleted, about: u, now: now})
	return err
}

// setLanguage sets the language of the emails about account id.
func (st *store) setLanguage(ctx context.Context, id int64, language string) error {
	_, err := st.write.ExecContext(ctx, `UPDATE users SET language = $1 WHERE id = $2`, language, id)
	st.cache.forget() // a cached session carries the old one
	return err
}
