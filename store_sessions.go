package main

// store_sessions.go keeps sessions: a browser's login (scope "session", in a
// cookie) and a bearer token from the API (scope "authentication") are both
// tokens with a public id, their user agent, and when made and last used.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"
)

const (
	sessionIdle  = 7 * 24 * time.Hour // a browser's session ends after a week unused
	lastUseEvery = time.Minute        // a session's last use is written at most this often
)

// loginSession is a login as the account page and GET /v1/users/me/sessions
// show it: never its secret, nor its hash.
type loginSession struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used_at"`
	UserAgent string    `json:"user_agent"`
	Current   bool      `json:"current"`
	Browser   bool      `json:"-"` // a browser's session, not a bearer token
	hash      []byte    // set for the request's own session only
}

// newSession is a session to store when a login succeeds.
type newSession struct {
	hash      []byte
	scope     string // "session" (a browser's cookie) or "authentication" (a bearer token)
	expiry    time.Time
	userAgent string
}

// maxUserAgent is how much of a User-Agent a session keeps.
const maxUserAgent = 200

// insertLogin stores l for user id through tx, but only if the account's
// password hash is still checked (the one the login was compared with): it
// returns errNotFound when the password changed meanwhile.
func insertLogin(ctx context.Context, tx *sql.Tx, id int64, checked []byte, l *newSession, now time.Time) error {
	b := make([]byte, 8)
	rand.Read(b)
	ua := []rune(l.userAgent)
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, scope, expiry, session_id, created_at, last_used_at, user_agent)
		SELECT $1, id, $2, $3, $4, $5, $5, $6 FROM users WHERE id = $7 AND password_hash = $8`,
		l.hash, l.scope, millis(l.expiry), hex.EncodeToString(b), millis(now), string(ua), id, checked)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// sessionUser returns the user of the live session of scope with this
// hash, and the session, or errNotFound. A browser's session is live until
// its expiry and for sessionIdle after its last use. It writes the last use
// only when the one stored is lastUseEvery old: checking a session is a
// read.
func (st *store) sessionUser(ctx context.Context, hash []byte, scope string, now time.Time) (*user, *loginSession, error) {
	var u user
	var s loginSession
	var created, sCreated, sUsed int64
	err := st.read.QueryRowContext(ctx, `SELECT u.id, u.created_at, u.name, u.email, u.activated, u.password_hash,
			t.session_id, t.created_at, t.last_used_at, t.user_agent
		FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE t.hash = $1 AND t.scope = $2 AND t.expiry > $3 AND (t.scope <> 'session' OR t.last_used_at > $4)`,
		hash, scope, millis(now), millis(now.Add(-sessionIdle))).
		Scan(&u.ID, &created, &u.Name, &u.Email, &u.Activated, &u.passwordHash, &s.ID, &sCreated, &sUsed, &s.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, errNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	u.CreatedAt, s.CreatedAt, s.LastUsed = time.UnixMilli(created).UTC(), time.UnixMilli(sCreated).UTC(), time.UnixMilli(sUsed).UTC()
	s.Current, s.Browser, s.hash = true, scope == "session", hash
	if now.Sub(s.LastUsed) >= lastUseEvery {
		if _, err := st.write.ExecContext(ctx, `UPDATE tokens SET last_used_at = $1 WHERE hash = $2 AND last_used_at < $3`,
			millis(now), hash, millis(now.Add(-lastUseEvery))); err != nil {
			return nil, nil, err
		}
		s.LastUsed = now.UTC()
	}
	return &u, &s, nil
}

// sessions lists the live sessions of user id, newest first; the one with
// hash current is marked.
func (st *store) sessions(ctx context.Context, id int64, current []byte, now time.Time) ([]loginSession, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT session_id, created_at, last_used_at, user_agent, scope, hash = $2
		FROM tokens WHERE user_id = $1 AND expiry > $3 AND (scope = 'authentication' OR (scope = 'session' AND last_used_at > $4))
		ORDER BY created_at DESC, session_id`, id, current, millis(now), millis(now.Add(-sessionIdle)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []loginSession{}
	for rows.Next() {
		var s loginSession
		var created, used int64
		var scope string
		if err := rows.Scan(&s.ID, &created, &used, &s.UserAgent, &scope, &s.Current); err != nil {
			return nil, err
		}
		s.CreatedAt, s.LastUsed, s.Browser = time.UnixMilli(created).UTC(), time.UnixMilli(used).UTC(), scope == "session"
		list = append(list, s)
	}
	return list, rows.Err()
}

// endSession ends the session of user id with the public id sid, or
// returns errNotFound.
func (st *store) endSession(ctx context.Context, id int64, sid string) error {
	res, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND session_id = $2 AND scope IN ('session', 'authentication')`, id, sid)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// endOtherSessions ends every session of user id but the one with hash keep.
func (st *store) endOtherSessions(ctx context.Context, id int64, keep []byte) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope IN ('session', 'authentication') AND hash <> $2`, id, keep)
	return err
}
