package main

// store_operator.go is the store's side of `signup users` (cmd_users.go):
// finding and listing accounts, disabling and enabling them, inviting an
// address, and moving accounts out and in with their bcrypt hashes.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// account is an account as the operator sees it: never its password's
// hash (but in an export), never a client's address or user agent.
type account struct {
	ID         int64      `json:"id"`
	CreatedAt  time.Time  `json:"created_at"`
	Name       string     `json:"name"`
	Email      string     `json:"email"`
	Status     string     `json:"status"` // pending, active or disabled
	Language   string     `json:"language,omitempty"`
	InvitedAt  *time.Time `json:"invited_at,omitempty"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// accountOf is u as the operator sees it.
func accountOf(u *user) account {
	a := account{ID: u.ID, CreatedAt: u.CreatedAt, Name: u.Name, Email: u.Email, Status: u.status(), Language: u.language}
	if !u.invitedAt.IsZero() {
		a.InvitedAt = &u.invitedAt
	}
	if !u.disabledAt.IsZero() {
		a.DisabledAt = &u.disabledAt
	}
	return a
}

// status is "disabled" for an account the operator disabled, else
// "active" once activated, else "pending".
func (u *user) status() string {
	switch {
	case !u.disabledAt.IsZero():
		return "disabled"
	case u.Activated:
		return "active"
	}
	return "pending"
}

// statusWhere is the condition on users that each status names.
var statusWhere = map[string]string{
	"":         "1 = 1",
	"pending":  "activated = 0 AND disabled_at IS NULL",
	"active":   "activated = 1 AND disabled_at IS NULL",
	"disabled": "disabled_at IS NOT NULL",
}

// listUsers returns the accounts of status ("" for all) whose address or
// name contains q regardless of case ("" for all), the oldest first.
func (st *store) listUsers(ctx context.Context, status, q string) ([]account, error) {
	pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(q)) + "%"
	rows, err := st.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE `+statusWhere[status]+` AND (email_key LIKE $1 ESCAPE '\' OR lower(name) LIKE $1 ESCAPE '\') ORDER BY id`, pattern)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []account{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, accountOf(u))
	}
	return list, rows.Err()
}

// findUser returns the account whose id, or address regardless of case,
// is ref; errNotFound for none.
func (st *store) findUser(ctx context.Context, ref string) (*user, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return st.userByID(ctx, id)
	}
	return userByAddress(ctx, st.read, ref)
}

// errAlready means an operator's change would change nothing: the account
// is disabled already, or not disabled.
var errAlready = errors.New("nothing to change")

// disable disables account u at now, in one transaction: every token of it
// ends (sessions, bearer tokens, links in emails not yet followed, device
// tokens) and any address change it had waiting; the user.disabled event
// is queued and the change recorded in its activity. A disabled account
// logs no one in and gets no new link (store_users.go). It returns
// errAlready for a disabled account, errNotFound for a deleted one.
func (st *store) disable(ctx context.Context, u *user, now time.Time) error {
	return st.setDisabled(ctx, u, sql.NullInt64{Int64: millis(now), Valid: true}, now)
}

// enable lets account u log in again, and queues user.enabled. Its
// sessions stay ended. errAlready for an account not disabled.
func (st *store) enable(ctx context.Context, u *user, now time.Time) error {
	return st.setDisabled(ctx, u, sql.NullInt64{}, now)
}

// setDisabled sets the disabled_at of account u to at (NULL: enabled),
// as disable and enable say.
func (st *store) setDisabled(ctx context.Context, u *user, at sql.NullInt64, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	cond, kind, event := `disabled_at IS NULL`, activityDisabled, eventDisabled
	if !at.Valid {
		cond, kind, event = `disabled_at IS NOT NULL`, activityEnabled, eventEnabled
	}
	res, err := tx.ExecContext(ctx, `UPDATE users SET disabled_at = $1 WHERE id = $2 AND `+cond, at, u.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := st.findUser(ctx, strconv.FormatInt(u.ID, 10)); err != nil {
			return err
		}
		return errAlready
	}
	if at.Valid {
		if err := endAppTokens(ctx, tx, u.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, u.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM email_changes WHERE user_id = $1`, u.ID); err != nil {
			return err
		}
	}
	if err := recordActivity(ctx, tx, u.ID, kind, now, "", ""); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{event: event, about: u, now: now})
	return err
}

// errHasAccount means an address to invite has an activated (or
// disabled) account.
var errHasAccount = errors.New("the address has an account already")

// invite invites address at now, in one transaction: a new account,
// pending, without a password (name as given), or a pending account of the
// address marked invited (its name replaced when name is given); the
// invitation email, whose link lets its holder choose a password and
// activates the account; user.invited; its activity. The email counts in
// the address's send budget (errOverBudget: nothing changes).
// errHasAccount for an address with an activated or disabled account.
func (st *store) invite(ctx context.Context, address, name string, now time.Time) (*user, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Millisecond)
	u, err := userByAddress(ctx, tx, address)
	switch {
	case errors.Is(err, errNotFound):
		u = &user{CreatedAt: now, Name: name, Email: address, invitedAt: now}
		err = tx.QueryRowContext(ctx, `INSERT INTO users (created_at, name, email, email_key, password_hash, language, invited_at)
			VALUES ($1, $2, $3, $4, $5, '', $1) RETURNING id`, millis(now), name, address, strings.ToLower(address), []byte{}).Scan(&u.ID)
	case err != nil:
	case u.Activated || !u.disabledAt.IsZero():
		err = errHasAccount
	default:
		if name != "" {
			u.Name = name
		}
		u.invitedAt = now
		_, err = tx.ExecContext(ctx, `UPDATE users SET invited_at = $1, name = $2 WHERE id = $3`, millis(now), u.Name, u.ID)
	}
	if err != nil {
		return nil, err
	}
	if err := recordActivity(ctx, tx, u.ID, activityInvited, now, "", ""); err != nil {
		return nil, err
	}
	token, _ := newToken()
	if _, err := st.tell(ctx, tx, notice{kind: kindInvitation, to: u, token: token, event: eventInvited, about: u, now: now}); err != nil {
		return nil, err
	}
	return u, nil
}

// exported is one account as `signup users export` writes it and `signup
// users import` reads it: one JSON object per line.
type exported struct {
	ID           int64     `json:"id,omitempty"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	PasswordHash string    `json:"password_hash"`
	Activated    bool      `json:"activated"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	Language     string    `json:"language,omitempty"`
	Disabled     bool      `json:"disabled,omitempty"`

	line int // of the import file
}

// exportUsers calls each with every account, the oldest first.
func (st *store) exportUsers(ctx context.Context, each func(exported) error) error {
	rows, err := st.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return err
		}
		if err := each(exported{ID: u.ID, Email: u.Email, Name: u.Name, PasswordHash: string(u.passwordHash), Activated: u.Activated,
			CreatedAt: u.CreatedAt, Language: u.language, Disabled: !u.disabledAt.IsZero()}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// importUsers inserts every account of list in one transaction, dated now
// where an account has no time: all or none. An account that keeps its id
// (ID set) takes it; the others get new ones. The error of an account
// names its line: an address or id that has an account.
func (st *store) importUsers(ctx context.Context, list []exported, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	const columns = `created_at, name, email, email_key, password_hash, activated, language, disabled_at`
	insert, err := tx.PrepareContext(ctx, `INSERT INTO users (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT DO NOTHING RETURNING id`)
	if err != nil {
		return err
	}
	defer insert.Close()
	insertWithID, err := tx.PrepareContext(ctx, `INSERT INTO users (`+columns+`, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING RETURNING id`)
	if err != nil {
		return err
	}
	defer insertWithID.Close()
	for _, e := range list {
		created := e.CreatedAt
		if created.IsZero() {
			created = now
		}
		var disabled sql.NullInt64
		if e.Disabled {
			disabled = sql.NullInt64{Int64: millis(now), Valid: true}
		}
		args := []any{millis(created), e.Name, e.Email, strings.ToLower(e.Email), []byte(e.PasswordHash), boolInt(e.Activated), e.Language, disabled}
		stmt := insert
		if e.ID != 0 {
			stmt, args = insertWithID, append(args, e.ID)
		}
		var id int64
		err := stmt.QueryRowContext(ctx, args...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			if e.ID != 0 {
				return fmt.Errorf("line %d: an account has the address %s or the id %d already", e.line, e.Email, e.ID)
			}
			return fmt.Errorf("line %d: an account has the address %s already", e.line, e.Email)
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", e.line, err)
		}
	}
	if st.engine == "postgres" { // ids given here pass the identity's sequence by
		if _, err := tx.ExecContext(ctx, `SELECT setval(s, m) FROM (SELECT pg_get_serial_sequence('users', 'id') AS s, (SELECT max(id) FROM users) AS m) x
			WHERE m > coalesce(pg_sequence_last_value(s::regclass), 0)`); err != nil {
			return err
		}
	}
	return st.commit(tx)
}

// operatorCounts returns how many accounts are disabled, and how many
// invited accounts are still pending, for /metrics.
func (st *store) operatorCounts(ctx context.Context) (disabled, invited int64, err error) {
	err = st.read.QueryRowContext(ctx, `SELECT
		coalesce(sum(CASE WHEN disabled_at IS NOT NULL THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN disabled_at IS NULL AND activated = 0 AND invited_at IS NOT NULL THEN 1 ELSE 0 END), 0)
		FROM users WHERE disabled_at IS NOT NULL OR invited_at IS NOT NULL`).Scan(&disabled, &invited)
	return disabled, invited, err
}

// changedMarker is the file beside an SQLite database into which a
// subcommand writes a new value after it changed accounts: the serving
// process's sessionCache reads it at each check, sees the value change
// and forgets what it read (sessionCache.stale). It is made by whichever comes first,
// and must not be deleted while the service runs.
func changedMarker(db string) string { return db + "-changed" }

// accountsChanged tells the process serving an SQLite database that a
// subcommand changed accounts, so that a session ended here is refused
// there at the next check. PostgreSQL needs nothing: no instance caches
// sessions.
func (st *store) accountsChanged() error {
	if st.engine != "sqlite" {
		return nil
	}
	f, err := os.OpenFile(changedMarker(st.path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(binary.LittleEndian.AppendUint64(nil, uint64(time.Now().UnixNano())), 0) // in place: the server holds this file open
	return err
}
