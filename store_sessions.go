package main

// store_sessions.go keeps sessions: a browser's login (scope "session", in a
// cookie) and a bearer token from the API (scope "authentication") are both
// tokens with a public id, their user agent, and when made and last used.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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
	Address   string    `json:"-"` // the client's address when it was made, for the account page
	hash      []byte    // set for the request's own session only
}

// newSession is a session to store when a login succeeds.
type newSession struct {
	hash      []byte
	scope     string // "session" (a browser's cookie) or "authentication" (a bearer token)
	expiry    time.Time
	userAgent string
	address   string // the client's (an IPv6 client's /64)
	amr       string // how the person logged in, as OpenID Connect's amr says it: "pwd", "pwd otp mfa", "hwk mfa", "swk mfa"
}

// maxUserAgent is how much of a User-Agent a session keeps.
const maxUserAgent = 200

// maxPerAccount is how many tokens of one scope an account holds at most:
// browser sessions, bearer tokens, device tokens. A new one past it ends
// the oldest (capTokens), so that no one can grow an account's list, and
// its page, without end.
const maxPerAccount = 50

// capTokens ends, through tx, the oldest tokens of scope of user id past
// maxPerAccount.
func capTokens(ctx context.Context, tx *sql.Tx, id int64, scope string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2 AND expiry <
		(SELECT expiry FROM tokens WHERE user_id = $1 AND scope = $2 ORDER BY expiry DESC LIMIT 1 OFFSET $3)`, id, scope, maxPerAccount-1)
	return err
}

// insertLogin stores l for user id through tx, and records the login in its
// activity, but only if the account's password hash is still checked (the
// one the login was compared with) and the operator has not disabled it:
// it returns errNotFound when the password changed meanwhile, or the
// account was disabled. Past
// maxPerAccount of its scope, the oldest ends.
func insertLogin(ctx context.Context, tx *sql.Tx, id int64, checked []byte, l *newSession, now time.Time) error {
	b := make([]byte, 8)
	rand.Read(b)
	ua := []rune(l.userAgent)
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, scope, expiry, session_id, created_at, last_used_at, user_agent, client_addr, amr)
		SELECT $1, id, $2, $3, $4, $5, $5, $6, $9, $10 FROM users WHERE id = $7 AND password_hash = $8 AND disabled_at IS NULL`,
		l.hash, l.scope, millis(l.expiry), hex.EncodeToString(b), millis(now), string(ua), id, checked, l.address, l.amr)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	if err := recordActivity(ctx, tx, id, activityLogin, now, l.address, l.userAgent); err != nil {
		return err
	}
	return capTokens(ctx, tx, id, l.scope)
}

// sessionQuery finds a live session of a scope by its hash, and its user.
const sessionQuery = `SELECT u.id, u.created_at, u.name, u.email, u.activated, u.language,
		t.session_id, t.created_at, t.last_used_at, t.user_agent, t.expiry
	FROM tokens t JOIN users u ON u.id = t.user_id
	WHERE t.hash = $1 AND t.scope = $2 AND t.expiry > $3 AND (t.scope <> 'session' OR t.last_used_at > $4) AND u.disabled_at IS NULL`

// sessionUser returns the user of the live session of scope with this
// hash, and the session, or errNotFound. A browser's session is live until
// its expiry and for sessionIdle after its last use. It writes the last use
// only when the one stored is lastUseEvery old: checking a session is a
// read — on SQLite, most often not even that (sessionCache). The user it
// returns carries no password hash.
func (st *store) sessionUser(ctx context.Context, hash []byte, scope string, now time.Time) (*user, *loginSession, error) {
	c, ok := st.cache.get(hash)
	if !ok {
		gen := st.cache.generation()
		var created, sCreated, sUsed, expiry int64
		err := st.sessionStmt.QueryRowContext(ctx, hash, scope, millis(now), millis(now.Add(-sessionIdle))).
			Scan(&c.u.ID, &created, &c.u.Name, &c.u.Email, &c.u.Activated, &c.u.language, &c.s.ID, &sCreated, &sUsed, &c.s.UserAgent, &expiry)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, errNotFound
		}
		if err != nil {
			return nil, nil, err
		}
		c.u.CreatedAt, c.s.CreatedAt, c.s.LastUsed = time.UnixMilli(created).UTC(), time.UnixMilli(sCreated).UTC(), time.UnixMilli(sUsed).UTC()
		c.scope, c.expiry = scope, time.UnixMilli(expiry)
		st.cache.put(hash, c, gen)
	}
	if c.scope != scope || !now.Before(c.expiry) || (scope == "session" && !c.s.LastUsed.After(now.Add(-sessionIdle))) {
		return nil, nil, errNotFound
	}
	u, s := c.u, c.s
	s.Current, s.Browser, s.hash = true, scope == "session", hash
	if now.Sub(s.LastUsed) >= lastUseEvery && st.touch(ctx, hash, now) {
		s.LastUsed = now.UTC()
		c.s.LastUsed = s.LastUsed
		st.cache.update(hash, c)
	}
	return &u, &s, nil
}

// lastUseTimeout bounds the write of a session's last use: a check answers
// from its read, and the write is bookkeeping.
const lastUseTimeout = 500 * time.Millisecond

// touch writes a session's last use, reporting whether it did. A failure
// (a full disk, the database away) never fails the check that asked for
// it: it is logged once, and again only after a write has succeeded.
func (st *store) touch(ctx context.Context, hash []byte, now time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, lastUseTimeout)
	defer cancel()
	_, err := st.write.ExecContext(ctx, `UPDATE tokens SET last_used_at = $1 WHERE hash = $2 AND last_used_at < $3`,
		millis(now), hash, millis(now.Add(-lastUseEvery)))
	if err != nil {
		if !st.touchFailing.Swap(true) {
			st.logger.Warn("could not write a session's last use; sessions are still checked, and their last use is written again once the database takes it", "error", err)
		}
		return false
	}
	st.touchFailing.Store(false)
	return true
}

// sessionCache keeps, on SQLite, what sessionUser read, so that a proxy's
// check on every request to the app is most often not a database read.
// It stays true because one process serves an SQLite database
// (lockDatabase) and every write that may end a session or change a user
// — each commit (store.commit) and each statement that deletes tokens —
// forgets it all after it is done (forget): a session ended is refused at
// once. A subcommand beside it (`signup users disable`) writes a new value
// into the marker file after its change (store.accountsChanged); the
// serving process holds that file open and reads its 8 bytes at each
// check (one pread, no database read), so the next check sees the value
// changed and forgets too (stale). Where the file cannot be opened there
// is no cache. On PostgreSQL another instance may end a session, so there
// is no cache (nil) and every check reads.
type sessionCache struct {
	gen     atomic.Uint64
	mu      sync.RWMutex
	entries map[[32]byte]cachedSession

	marker *os.File      // the marker file (changedMarker), held open
	fd     int           // its descriptor
	seen   atomic.Uint64 // its value at the last check
}

// cachedSession is a session as sessionUser read it, and the generation of
// the cache when the read began.
type cachedSession struct {
	u      user
	s      loginSession
	scope  string
	expiry time.Time
	gen    uint64
	token  *oidcToken // an app's access token (store.accessToken), not a session
}

// maxCachedSessions bounds the cache; past it, it starts over.
const maxCachedSessions = 100_000

// newSessionCache is the cache of a database whose marker file is at
// marker, or nil (no cache: every check reads) when the file cannot be
// opened.
func newSessionCache(marker string) *sessionCache {
	f, err := os.OpenFile(marker, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil
	}
	c := &sessionCache{entries: map[[32]byte]cachedSession{}, marker: f, fd: int(f.Fd())}
	c.seen.Store(c.markerValue())
	return c
}

// markerSize is the marker file's size: one 64-bit value.
const markerSize = 8

// markerValue is the value in the marker file now; 0 when it cannot be
// read (a file not written yet, or cut short). A subcommand writing it
// while it is read at worst gives a torn value, which only makes the
// cache forget. It is read afresh at every check: a mapping of the file
// would save the system call, but a file truncated under it would crash
// the process.
func (c *sessionCache) markerValue() uint64 {
	var b [markerSize]byte
	if n, err := syscall.Pread(c.fd, b[:], 0); err != nil || n != markerSize {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// stale reports, and forgets everything read so far when, a subcommand
// has written the marker file since the last check.
func (c *sessionCache) stale() bool {
	v := c.markerValue()
	if v == c.seen.Load() {
		return false
	}
	c.seen.Store(v)
	c.forget()
	return true
}

// close closes the marker file.
func (c *sessionCache) close() error {
	if c == nil {
		return nil
	}
	return c.marker.Close()
}

func (c *sessionCache) generation() uint64 {
	if c == nil {
		return 0
	}
	return c.gen.Load()
}

// get returns the session with this hash if it was read since the last
// write that may have ended it.
func (c *sessionCache) get(hash []byte) (cachedSession, bool) {
	if c == nil || len(hash) != 32 || c.stale() {
		return cachedSession{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[[32]byte(hash)]
	c.mu.RUnlock()
	return e, ok && e.gen == c.gen.Load()
}

// put keeps e, read from a generation gen that began before the read.
func (c *sessionCache) put(hash []byte, e cachedSession, gen uint64) {
	if c == nil || len(hash) != 32 {
		return
	}
	e.gen = gen
	c.mu.Lock()
	if len(c.entries) >= maxCachedSessions {
		clear(c.entries)
	}
	c.entries[[32]byte(hash)] = e
	c.mu.Unlock()
}

// update replaces what is kept of a session whose last use was written;
// that write ends nothing, so it keeps the generation.
func (c *sessionCache) update(hash []byte, e cachedSession) {
	if c == nil || len(hash) != 32 {
		return
	}
	c.mu.Lock()
	if old, ok := c.entries[[32]byte(hash)]; ok {
		e.gen = old.gen
		c.entries[[32]byte(hash)] = e
	}
	c.mu.Unlock()
}

// forget drops everything read so far: called after each write that may
// end a session or change a user, once it is done.
func (c *sessionCache) forget() {
	if c != nil {
		c.gen.Add(1)
	}
}

// sessions lists the live sessions of user id, the one with hash current
// first and marked, then the newest first, at most maxPerAccount of each
// scope.
func (st *store) sessions(ctx context.Context, id int64, current []byte, now time.Time) ([]loginSession, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT session_id, created_at, last_used_at, user_agent, client_addr, scope, hash = $2
		FROM tokens WHERE user_id = $1 AND expiry > $3 AND (scope = 'authentication' OR (scope = 'session' AND last_used_at > $4))
		ORDER BY hash = $2 DESC, created_at DESC, session_id LIMIT $5`, id, current, millis(now), millis(now.Add(-sessionIdle)), 2*maxPerAccount)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []loginSession{}
	for rows.Next() {
		var s loginSession
		var created, used int64
		var scope string
		if err := rows.Scan(&s.ID, &created, &used, &s.UserAgent, &s.Address, &scope, &s.Current); err != nil {
			return nil, err
		}
		s.CreatedAt, s.LastUsed, s.Browser = time.UnixMilli(created).UTC(), time.UnixMilli(used).UTC(), scope == "session"
		list = append(list, s)
	}
	return list, rows.Err()
}

// endSession ends the session of user id with the public id sid, and
// records it in the account's activity, or returns errNotFound.
func (st *store) endSession(ctx context.Context, id int64, sid string, now time.Time) error {
	return st.endSessions(ctx, id, `session_id = $2`, sid, now)
}

// endOtherSessions ends every session of user id but the one with hash
// keep, and records it in the account's activity.
func (st *store) endOtherSessions(ctx context.Context, id int64, keep []byte, now time.Time) error {
	err := st.endSessions(ctx, id, `hash <> $2`, keep, now)
	if errors.Is(err, errNotFound) {
		return nil // there were none
	}
	return err
}

// endSessions ends the sessions of user id that which (a condition on $2,
// arg) picks, with an entry in its activity; errNotFound when none.
func (st *store) endSessions(ctx context.Context, id int64, which string, arg any, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope IN ('session', 'authentication') AND `+which, id, arg)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	if err := recordActivity(ctx, tx, id, activitySessionsEnded, now, "", ""); err != nil {
		return err
	}
	return st.commit(tx)
}
