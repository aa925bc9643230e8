package main

// store_activity.go keeps each account's record of what happened to it:
// written in the transaction of the change it records, kept
// -activity-retention, shown to the person on the account page and to the
// operator in `signup users show`.

import (
	"context"
	"database/sql"
	"time"
)

// activityKind names what happened to an account.
type activityKind string

// The kinds of activity.
const (
	activitySignup          activityKind = "signup" // a signup for the address: a new account, or a pending one taken over
	activityActivated       activityKind = "activated"
	activityLogin           activityKind = "login" // with the client's address and user agent
	activityLoginFailed     activityKind = "login_failed"
	activityPasswordChanged activityKind = "password_changed" // from the account page, the API or a reset
	activityEmailChanged    activityKind = "email_changed"
	activitySessionsEnded   activityKind = "sessions_ended" // one or all of the others, from the account page or the API
	activityLogout          activityKind = "logout"
	activityDisabled        activityKind = "disabled" // by the operator
	activityEnabled         activityKind = "enabled"
	activityInvited         activityKind = "invited"
	activityTwoStepOn       activityKind = "two_step_enabled"
	activityTwoStepOff      activityKind = "two_step_disabled"
	activityRecoveryUsed    activityKind = "recovery_code_used"
	activityRecoveryRenewed activityKind = "recovery_codes_renewed"
	activityPasskeyAdded    activityKind = "passkey_added"
	activityPasskeyRemoved  activityKind = "passkey_removed"
	activityAppAllowed      activityKind = "app_allowed"
)

// activityKinds lists every kind, so that each language is checked to
// name them all (languages_test.go).
var activityKinds = []activityKind{activitySignup, activityActivated, activityLogin, activityLoginFailed, activityPasswordChanged,
	activityEmailChanged, activitySessionsEnded, activityLogout, activityDisabled, activityEnabled, activityInvited,
	activityTwoStepOn, activityTwoStepOff, activityRecoveryUsed, activityRecoveryRenewed,
	activityPasskeyAdded, activityPasskeyRemoved, activityAppAllowed}

// activityEntry is one record of an account's activity. Address and
// UserAgent, where the entry has them, are shown to the account's owner
// alone.
type activityEntry struct {
	At        time.Time    `json:"at"`
	Kind      activityKind `json:"kind"`
	Address   string       `json:"client_addr,omitempty"`
	UserAgent string       `json:"user_agent,omitempty"`
}

// execer runs a statement: a transaction or a pool.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// recordActivity adds, through q (the change's own transaction), an entry
// of kind at now to account id's record; address and userAgent where the
// client is known.
func recordActivity(ctx context.Context, q execer, id int64, kind activityKind, now time.Time, address, userAgent string) error {
	ua := []rune(userAgent)
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	_, err := q.ExecContext(ctx, `INSERT INTO activity (user_id, at, kind, client_addr, user_agent) VALUES ($1, $2, $3, $4, $5)`,
		id, millis(now), string(kind), address, string(ua))
	return err
}

// maxActivityShown is how many entries the account page and `users show`
// show, the newest first.
const maxActivityShown = 30

// activity returns the newest entries of account id's record, at most
// limit, the newest first.
func (st *store) activity(ctx context.Context, id int64, limit int) ([]activityEntry, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT at, kind, client_addr, user_agent FROM activity WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []activityEntry{}
	for rows.Next() {
		var e activityEntry
		var at int64
		var kind string
		if err := rows.Scan(&at, &kind, &e.Address, &e.UserAgent); err != nil {
			return nil, err
		}
		e.At, e.Kind = time.UnixMilli(at).UTC(), activityKind(kind)
		list = append(list, e)
	}
	return list, rows.Err()
}

// purgeActivity deletes every entry older than before.
func (st *store) purgeActivity(ctx context.Context, before time.Time) (int64, error) {
	res, err := st.write.ExecContext(ctx, `DELETE FROM activity WHERE at < $1`, millis(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// loginFailed records a wrong password typed for account id. It is the
// login's bookkeeping, never its answer: it is bounded in time, and the
// caller only logs its failure.
func (st *store) loginFailed(ctx context.Context, id int64, address, userAgent string, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, lastUseTimeout)
	defer cancel()
	return recordActivity(ctx, st.write, id, activityLoginFailed, now, address, userAgent)
}
