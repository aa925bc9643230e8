package main

// store_passkeys.go keeps passkeys (WebAuthn credentials: public keys, no
// secret) and the ceremonies between a WebAuthn request's two halves.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

// passkey is a passkey as the account page lists it.
type passkey struct {
	ID        []byte
	Name      string
	CreatedAt time.Time
	LastUsed  time.Time // zero: never used
	cred      webauthn.Credential
}

// passkeys returns account id's passkeys, the oldest first.
func (st *store) passkeys(ctx context.Context, id int64) ([]passkey, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT id, name, credential, created_at, last_used_at FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []passkey
	for rows.Next() {
		var p passkey
		var cred string
		var created, used int64
		if err := rows.Scan(&p.ID, &p.Name, &cred, &created, &used); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(cred), &p.cred); err != nil {
			return nil, err
		}
		p.CreatedAt = time.UnixMilli(created).UTC()
		if used > 0 {
			p.LastUsed = time.UnixMilli(used).UTC()
		}
		list = append(list, p)
	}
	return list, rows.Err()
}

// removePasskey deletes u's passkey with this credential id, and tells
// the address and the app; errNotFound for none.
func (st *store) removePasskey(ctx context.Context, u *user, id []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var name string // gone with it
	err = tx.QueryRowContext(ctx, `DELETE FROM passkeys WHERE id = $1 AND user_id = $2 RETURNING name`, id, u.ID).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, u.ID, activityPasskeyRemoved, now, "", ""); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindPasskeyRemoved, to: u, event: eventPasskeyRemoved, about: u, now: now})
	return err
}

// addPasskey stores cred as u's passkey named name, and tells the address
// and the app, in one transaction.
func (st *store) addPasskey(ctx context.Context, u *user, name string, cred *webauthn.Credential, now time.Time) error {
	js, _ := json.Marshal(cred) // plain data: it cannot fail
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO passkeys (id, user_id, name, credential, created_at) VALUES ($1, $2, $3, $4, $5)`,
		cred.ID, u.ID, name, string(js), millis(now)); err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, u.ID, activityPasskeyAdded, now, "", ""); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindPasskeyAdded, to: u, event: eventPasskeyAdded, about: u, now: now})
	return err
}

// passkeyUsed records a login with the passkey cred: its signature count
// (an authenticator's clone detection) and when.
func (st *store) passkeyUsed(ctx context.Context, cred *webauthn.Credential, now time.Time) error {
	js, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	_, err = st.write.ExecContext(ctx, `UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3`, string(js), millis(now), cred.ID)
	return err
}

// ceremonyTTL is how long a WebAuthn ceremony waits for the browser.
const ceremonyTTL = 5 * time.Minute

// beginCeremony keeps session (for account id; 0 for a login) under the
// hash of a new token, which it returns.
func (st *store) beginCeremony(ctx context.Context, id int64, session *webauthn.SessionData, now time.Time) (string, error) {
	js, err := json.Marshal(session)
	if err != nil {
		return "", err
	}
	token, hash := newToken()
	_, err = st.write.ExecContext(ctx, `INSERT INTO ceremonies (hash, user_id, data, expiry) VALUES ($1, $2, $3, $4)`,
		hash, userID(id), string(js), millis(now.Add(ceremonyTTL)))
	return token, err
}

// endCeremony takes the live ceremony of token (deleting it: it is good
// once) for account id (0 for a login), or returns errNotFound.
func (st *store) endCeremony(ctx context.Context, token string, id int64, now time.Time) (*webauthn.SessionData, error) {
	var data string
	err := st.write.QueryRowContext(ctx, `DELETE FROM ceremonies WHERE hash = $1 AND coalesce(user_id, 0) = $2 AND expiry > $3 RETURNING data`,
		hashToken(token), id, millis(now)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	var s webauthn.SessionData
	return &s, json.Unmarshal([]byte(data), &s)
}

// purgeCeremonies deletes the ceremonies that expired before now.
func (st *store) purgeCeremonies(ctx context.Context, now time.Time) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM ceremonies WHERE expiry < $1`, millis(now))
	return err
}

// passkeyHandle is the WebAuthn user handle of account id: its id, which
// forward auth already gives the app as Remote-User (no address, no name).
func passkeyHandle(id int64) []byte { return []byte(strconv.FormatInt(id, 10)) }

// userOfHandle returns the account of a user handle, with its passkeys,
// or errNotFound.
func (st *store) userOfHandle(ctx context.Context, handle []byte) (*user, []passkey, error) {
	id, err := strconv.ParseInt(string(handle), 10, 64)
	if err != nil {
		return nil, nil, errNotFound
	}
	u, err := scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return nil, nil, err
	}
	keys, err := st.passkeys(ctx, id)
	return u, keys, err
}
