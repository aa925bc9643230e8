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
	handle    []byte // the WebAuthn user handle it was made with
}

// passkeys returns account id's passkeys, the oldest first.
func (st *store) passkeys(ctx context.Context, id int64) ([]passkey, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT id, name, credential, created_at, last_used_at, handle FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []passkey
	for rows.Next() {
		var p passkey
		var cred string
		var created, used int64
		if err := rows.Scan(&p.ID, &p.Name, &cred, &created, &used, &p.handle); err != nil {
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

// errLastCredential refuses to remove the last passkey of an account
// without a password: nothing would log in to it.
var errLastCredential = errors.New("the account's only way in")

// removePasskey deletes u's passkey with this credential id, and tells
// the address and the app; errNotFound for none, errLastCredential for
// the only passkey of an account without a password.
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
	var left bool
	if err == nil {
		err = tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1)
			OR EXISTS (SELECT 1 FROM users WHERE id = $1 AND length(password_hash) > 0)`, u.ID).Scan(&left)
	}
	if err == nil && !left {
		return errLastCredential
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

// newPasskey is a passkey the browser has just made: its name, the
// credential go-webauthn verified, and the user handle it was made with.
type newPasskey struct {
	name   string
	cred   *webauthn.Credential
	handle []byte
}

// insertPasskey stores k as account id's passkey, in tx.
func insertPasskey(ctx context.Context, tx *sql.Tx, id int64, k *newPasskey, now time.Time) error {
	js, _ := json.Marshal(k.cred) // plain data: it cannot fail
	_, err := tx.ExecContext(ctx, `INSERT INTO passkeys (id, user_id, name, credential, created_at, handle) VALUES ($1, $2, $3, $4, $5, $6)`,
		k.cred.ID, id, k.name, string(js), millis(now), k.handle)
	return err
}

// addPasskey stores k as u's passkey, and tells the address and the app,
// in one transaction.
func (st *store) addPasskey(ctx context.Context, u *user, k *newPasskey, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := insertPasskey(ctx, tx, u.ID, k, now); err != nil {
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

// ceremony is what a WebAuthn ceremony keeps between its two requests:
// go-webauthn's session data, what it is for (so that one begun for a
// login finishes nothing else), and a passkey signup's name and address.
type ceremony struct {
	webauthn.SessionData
	Purpose string         `json:"purpose"` // "add", "login", "proof", "signup", "activate" or "activate-new"
	Signup  *passkeySignup `json:"signup,omitempty"`
}

// beginCeremony keeps c (for account id; 0 for a login or a signup) under
// the hash of a new token, which it returns.
func (st *store) beginCeremony(ctx context.Context, id int64, c *ceremony, now time.Time) (string, error) {
	js, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	token, hash := newToken()
	_, err = st.write.ExecContext(ctx, `INSERT INTO ceremonies (hash, user_id, data, expiry) VALUES ($1, $2, $3, $4)`,
		hash, userID(id), string(js), millis(now.Add(ceremonyTTL)))
	return token, err
}

// endCeremony takes the live ceremony of token (deleting it: it is good
// once) for account id (0 for a login or a signup) and purpose, or returns
// errNotFound.
func (st *store) endCeremony(ctx context.Context, token string, id int64, purpose string, now time.Time) (*ceremony, error) {
	var data string
	err := st.write.QueryRowContext(ctx, `DELETE FROM ceremonies WHERE hash = $1 AND coalesce(user_id, 0) = $2 AND expiry > $3 RETURNING data`,
		hashToken(token), id, millis(now)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	var c ceremony
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return nil, err
	}
	if c.Purpose != purpose {
		return nil, errNotFound
	}
	return &c, nil
}

// purgeCeremonies deletes the ceremonies that expired before now.
func (st *store) purgeCeremonies(ctx context.Context, now time.Time) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM ceremonies WHERE expiry < $1`, millis(now))
	return err
}

// passkeyHandle is the WebAuthn user handle of account id: its id, which
// forward auth already gives the app as Remote-User (no address, no name).
func passkeyHandle(id int64) []byte { return []byte(strconv.FormatInt(id, 10)) }

// ownerOfPasskey returns the account holding the passkey with this
// credential id and user handle, with its passkeys, or errNotFound.
func (st *store) ownerOfPasskey(ctx context.Context, id, handle []byte) (*user, []passkey, error) {
	u, err := scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE id = (SELECT user_id FROM passkeys WHERE id = $1 AND handle = $2)`, id, handle))
	if err != nil {
		return nil, nil, err
	}
	keys, err := st.passkeys(ctx, u.ID)
	return u, keys, err
}

// proofTTL is how long a passkey's confirmation lets its session make one
// sensitive change without the password.
const proofTTL = 5 * time.Minute

// proveSession lets the session with this hash make one sensitive change
// without the password until now+proofTTL: a passkey has just confirmed
// its person.
func (st *store) proveSession(ctx context.Context, sessionHash []byte, now time.Time) error {
	_, err := st.write.ExecContext(ctx, `UPDATE tokens SET proven_until = $1 WHERE hash = $2 AND scope = 'session'`,
		millis(now.Add(proofTTL)), sessionHash)
	return err
}

// sessionProven reports whether the session with this hash has a
// passkey's confirmation left (what the account page shows).
func (st *store) sessionProven(ctx context.Context, sessionHash []byte, now time.Time) (bool, error) {
	var proven bool
	err := st.read.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tokens WHERE hash = $1 AND scope = 'session' AND proven_until > $2)`,
		sessionHash, millis(now)).Scan(&proven)
	return proven, err
}

// takeProof spends the session's confirmation by a passkey, if it has
// one: it reports whether it had.
func (st *store) takeProof(ctx context.Context, sessionHash []byte, now time.Time) (bool, error) {
	res, err := st.write.ExecContext(ctx, `UPDATE tokens SET proven_until = 0 WHERE hash = $1 AND scope = 'session' AND proven_until > $2`,
		sessionHash, millis(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
