package main

// store_oidc.go keeps what Sign in with signup (OpenID Connect, oidc.go)
// needs in the database, so that every instance shares it: the
// authorization requests and their codes, the tokens issued to apps, and
// the consents people gave. The clients are in store_oidc_clients.go, the
// keys in store_oidc_keys.go.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
)

// oidcRequest is an authorization request, from /authorize to the token
// endpoint: what the app asked for, and who logged in for it and how.
type oidcRequest struct {
	ID           string   `json:"-"`
	ClientID     string   `json:"-"`
	RedirectURI  string   `json:"redirect_uri"`
	State        string   `json:"state"`
	Nonce        string   `json:"nonce"`
	Scopes       []string `json:"scopes"`
	ResponseType string   `json:"response_type"`
	ResponseMode string   `json:"response_mode"`
	Challenge    string   `json:"code_challenge"`
	Method       string   `json:"code_challenge_method"`
	Prompt       []string `json:"prompt"`
	MaxAge       *uint    `json:"max_age"`
	CreatedAt    int64    `json:"created_at"` // Unix milliseconds

	userID   int64
	authTime time.Time
	amr      []string
}

// oidcRequestTTL is how long an authorization request waits for the login.
const oidcRequestTTL = 30 * time.Minute

// codeTTL is how long an authorization code lives.
const codeTTL = 60 * time.Second

// createOIDCRequest stores req.
func (st *store) createOIDCRequest(ctx context.Context, req *oidcRequest, now time.Time) error {
	data, _ := json.Marshal(req) // plain data: it cannot fail
	_, err := st.write.ExecContext(ctx, `INSERT INTO oidc_requests (id, client_id, data, expiry) VALUES ($1, $2, $3, $4)`,
		req.ID, req.ClientID, string(data), millis(now.Add(oidcRequestTTL)))
	return err
}

const oidcRequestColumns = `id, client_id, data, user_id, auth_time, amr`

func scanOIDCRequest(row interface{ Scan(...any) error }, more ...any) (*oidcRequest, error) {
	var req oidcRequest
	var data, amr string
	var userID sql.NullInt64
	var authTime int64
	err := row.Scan(append([]any{&req.ID, &req.ClientID, &data, &userID, &authTime, &amr}, more...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(data), &req); err != nil {
		return nil, err
	}
	req.userID, req.amr = userID.Int64, strings.Fields(amr)
	if authTime > 0 {
		req.authTime = time.UnixMilli(authTime).UTC()
	}
	return &req, nil
}

// oidcRequest returns the live authorization request with this id (no
// code issued for it yet), or errNotFound.
func (st *store) oidcRequest(ctx context.Context, id string, now time.Time) (*oidcRequest, error) {
	return scanOIDCRequest(st.read.QueryRowContext(ctx, `SELECT `+oidcRequestColumns+` FROM oidc_requests
		WHERE id = $1 AND expiry > $2 AND code_hash IS NULL`, id, millis(now)))
}

// loggedInFor records that account userID logged in for the request id
// at authTime, by amr.
func (st *store) loggedInFor(ctx context.Context, id string, userID int64, authTime time.Time, amr []string) error {
	_, err := st.write.ExecContext(ctx, `UPDATE oidc_requests SET user_id = $1, auth_time = $2, amr = $3 WHERE id = $4 AND code_hash IS NULL`,
		userID, millis(authTime), strings.Join(amr, " "), id)
	return err
}

// saveCode binds the code (its hash) to the request id, good for codeTTL.
func (st *store) saveCode(ctx context.Context, id string, codeHash []byte, now time.Time) error {
	_, err := st.write.ExecContext(ctx, `UPDATE oidc_requests SET code_hash = $1, expiry = $2 WHERE id = $3 AND code_hash IS NULL AND user_id IS NOT NULL`,
		codeHash, millis(now.Add(codeTTL)), id)
	return err
}

// errCodeReused means a code used before: the tokens issued from it are
// revoked.
var errCodeReused = errors.New("authorization code used before")

// codeRequest returns the request of the live code with this hash — a
// read: the code is taken in the transaction that stores its tokens
// (createToken). A code used before revokes every token issued from it
// (errCodeReused).
func (st *store) codeRequest(ctx context.Context, codeHash []byte, now time.Time) (*oidcRequest, error) {
	var used bool
	req, err := scanOIDCRequest(st.read.QueryRowContext(ctx, `SELECT `+oidcRequestColumns+`, used FROM oidc_requests
		WHERE code_hash = $1 AND expiry > $2 AND user_id IS NOT NULL`, codeHash, millis(now)), &used)
	if err == nil && used {
		return nil, st.revokeCode(ctx, req.ID)
	}
	return req, err
}

// revokeCode ends the tokens issued from the request id's code, used
// again, and returns errCodeReused.
func (st *store) revokeCode(ctx context.Context, id string) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE request_id = $1`, id)
	st.cache.forget()
	if err != nil {
		return err
	}
	return errCodeReused
}

// oidcToken is a grant's token: an access token (its id), and with
// offline_access a refresh token, of one family.
type oidcToken struct {
	ID        string
	UserID    int64
	ClientID  string
	RequestID string
	Family    string
	Scopes    []string
	AMR       []string
	AuthTime  time.Time
	Expiry    time.Time
}

// createToken stores t, with the refresh token's hash (nil: none) good
// until refreshExpiry, and takes in the same transaction what it is
// issued for — once on every instance, even when two uses race (one
// UPDATE): for a code's grant (from nil) the code, and the second use
// finds it taken, revokes what the first issued and returns
// errCodeReused; for a refresh, from, the token refreshed, and the second
// use revokes the family and returns errRefreshReused.
func (st *store) createToken(ctx context.Context, t *oidcToken, from *oidcToken, refreshHash []byte, refreshExpiry time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	take, id := `UPDATE oidc_requests SET used = 1 WHERE id = $1 AND used = 0`, t.RequestID
	if from != nil {
		take, id = `UPDATE oidc_tokens SET used = 1 WHERE id = $1 AND used = 0`, from.ID
	}
	res, err := tx.ExecContext(ctx, take, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		tx.Rollback()
		if from != nil {
			return st.revokeFamily(ctx, from.Family)
		}
		return st.revokeCode(ctx, t.RequestID)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO oidc_tokens (id, user_id, client_id, request_id, family, scopes, amr, auth_time, expiry, refresh_hash, refresh_expiry)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM users WHERE id = $2 AND disabled_at IS NULL`,
		t.ID, t.UserID, t.ClientID, t.RequestID, t.Family, strings.Join(t.Scopes, " "), strings.Join(t.AMR, " "),
		millis(t.AuthTime), millis(t.Expiry), refreshHash, millis(refreshExpiry)); err != nil {
		return err
	}
	return tx.Commit()
}

const oidcTokenColumns = `id, user_id, client_id, request_id, family, scopes, amr, auth_time, expiry`

func scanOIDCToken(row interface{ Scan(...any) error }) (*oidcToken, error) {
	var t oidcToken
	var scopes, amr string
	var authTime, expiry int64
	err := row.Scan(&t.ID, &t.UserID, &t.ClientID, &t.RequestID, &t.Family, &scopes, &amr, &authTime, &expiry)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	t.Scopes, t.AMR = strings.Fields(scopes), strings.Fields(amr)
	t.AuthTime, t.Expiry = time.UnixMilli(authTime).UTC(), time.UnixMilli(expiry).UTC()
	return &t, nil
}

// accessToken returns the live access token with this id and its account
// (activated, not disabled), or errNotFound: one read, no write — on
// SQLite most often not even that (sessionCache, which every write that
// ends a token forgets).
func (st *store) accessToken(ctx context.Context, id string, now time.Time) (oidcToken, user, error) {
	var buf [64]byte // the key's input, on the stack
	key := sha256.Sum256(append(append(buf[:0], "oidc-access-token:"...), id...))
	if c, ok := st.cache.get(key[:]); ok && c.token != nil {
		if !now.Before(c.token.Expiry) {
			return oidcToken{}, user{}, errNotFound
		}
		return *c.token, c.u, nil
	}
	gen := st.cache.generation()
	var t oidcToken
	var u user
	var scopes, amr string
	var authTime, expiry, created int64
	err := st.read.QueryRowContext(ctx, `SELECT t.id, t.client_id, t.scopes, t.amr, t.auth_time, t.expiry, u.id, u.created_at, u.name, u.email, u.language
		FROM oidc_tokens t JOIN users u ON u.id = t.user_id
		WHERE t.id = $1 AND t.expiry > $2 AND u.activated = 1 AND u.disabled_at IS NULL`, id, millis(now)).
		Scan(&t.ID, &t.ClientID, &scopes, &amr, &authTime, &expiry, &u.ID, &created, &u.Name, &u.Email, &u.language)
	if errors.Is(err, sql.ErrNoRows) {
		return oidcToken{}, user{}, errNotFound
	}
	if err != nil {
		return oidcToken{}, user{}, err
	}
	t.UserID, t.Scopes, t.AMR = u.ID, strings.Fields(scopes), strings.Fields(amr)
	t.AuthTime, t.Expiry = time.UnixMilli(authTime).UTC(), time.UnixMilli(expiry).UTC()
	u.CreatedAt, u.Activated = time.UnixMilli(created).UTC(), true
	cached := t
	st.cache.put(key[:], cachedSession{u: u, token: &cached, expiry: t.Expiry}, gen)
	return t, u, nil
}

// errRefreshReused means a refresh token used before: its whole family is
// revoked.
var errRefreshReused = errors.New("refresh token used before")

// refreshGrant returns the grant of the live refresh token with this hash
// — a read: the token is taken (rotated) in the transaction that stores
// its successor (createToken), so that a refresh refused on the way (the
// client or the scopes asked) uses nothing up. One used before revokes
// its family (errRefreshReused).
func (st *store) refreshGrant(ctx context.Context, refreshHash []byte, now time.Time) (*oidcToken, error) {
	t, err := scanOIDCToken(st.read.QueryRowContext(ctx, `SELECT `+oidcTokenColumns+` FROM oidc_tokens
		WHERE refresh_hash = $1 AND used = 0 AND refresh_expiry > $2`, refreshHash, millis(now)))
	if !errors.Is(err, errNotFound) {
		return t, err
	}
	var family string
	err = st.read.QueryRowContext(ctx, `SELECT family FROM oidc_tokens WHERE refresh_hash = $1 AND used = 1`, refreshHash).Scan(&family)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	return nil, st.revokeFamily(ctx, family)
}

// revokeFamily ends every token of the grant family, whose refresh token
// was used twice, and returns errRefreshReused.
func (st *store) revokeFamily(ctx context.Context, family string) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE family = $1`, family)
	st.cache.forget()
	if err != nil {
		return err
	}
	return errRefreshReused
}

// refreshOwner returns the user and token id of the live refresh token
// with this hash issued to client, or errNotFound.
func (st *store) refreshOwner(ctx context.Context, refreshHash []byte, clientID string, now time.Time) (int64, string, error) {
	var userID int64
	var id string
	err := st.read.QueryRowContext(ctx, `SELECT user_id, id FROM oidc_tokens WHERE refresh_hash = $1 AND client_id = $2 AND used = 0 AND refresh_expiry > $3`,
		refreshHash, clientID, millis(now)).Scan(&userID, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", errNotFound
	}
	return userID, id, err
}

// revokeToken ends the token with this id (or refresh token hash) issued
// to client, and its family.
func (st *store) revokeToken(ctx context.Context, id string, refreshHash []byte, clientID string) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE client_id = $1 AND family IN
		(SELECT family FROM oidc_tokens WHERE id = $2 OR refresh_hash = $3)`, clientID, id, refreshHash)
	st.cache.forget()
	return err
}

// sessionAMR is how the person of the session with this hash logged in.
func (st *store) sessionAMR(ctx context.Context, hash []byte) ([]string, error) {
	var amr string
	err := st.read.QueryRowContext(ctx, `SELECT amr FROM tokens WHERE hash = $1`, hash).Scan(&amr)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if amr == "" {
		amr = "pwd" // a session made before amr was kept
	}
	return strings.Fields(amr), err
}

// endAppTokens ends, in tx, every token apps hold for account id: a
// logout, a new password, the operator's disabling.
func endAppTokens(ctx context.Context, tx *sql.Tx, id int64) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE user_id = $1`, id)
	return err
}

// consented reports whether account userID allowed client every one of
// scopes.
func (st *store) consented(ctx context.Context, userID int64, clientID string, scopes []string) (bool, error) {
	var given string
	err := st.read.QueryRowContext(ctx, `SELECT scopes FROM oidc_consents WHERE user_id = $1 AND client_id = $2`, userID, clientID).Scan(&given)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	have := strings.Fields(given)
	for _, s := range scopes {
		if !slices.Contains(have, s) {
			return false, nil
		}
	}
	return true, nil
}

// consent records that account userID allows client scopes (with those
// it allowed before), and the activity.
func (st *store) consent(ctx context.Context, userID int64, clientID string, scopes []string, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var given string
	err = tx.QueryRowContext(ctx, `SELECT scopes FROM oidc_consents WHERE user_id = $1 AND client_id = $2`, userID, clientID).Scan(&given)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	all := strings.Fields(given)
	for _, s := range scopes {
		if !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2`, userID, clientID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO oidc_consents (user_id, client_id, scopes, created_at) VALUES ($1, $2, $3, $4)`,
		userID, clientID, strings.Join(all, " "), millis(now)); err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, userID, activityAppAllowed, now, "", ""); err != nil {
		return err
	}
	return tx.Commit()
}

// allowedApp is an app a person allowed, for the account page.
type allowedApp struct {
	ClientID string
	Name     string
	Since    time.Time
}

// allowedApps lists the apps account userID allowed, the oldest first.
func (st *store) allowedApps(ctx context.Context, userID int64) ([]allowedApp, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT c.id, c.name, k.created_at FROM oidc_consents k JOIN oidc_clients c ON c.id = k.client_id
		WHERE k.user_id = $1 ORDER BY k.created_at, c.id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []allowedApp
	for rows.Next() {
		var a allowedApp
		var since int64
		if err := rows.Scan(&a.ClientID, &a.Name, &since); err != nil {
			return nil, err
		}
		a.Since = time.UnixMilli(since).UTC()
		list = append(list, a)
	}
	return list, rows.Err()
}

// revokeApp withdraws account userID's consent to client, and ends the
// tokens it holds for the account.
func (st *store) revokeApp(ctx context.Context, userID int64, clientID string) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2`, `DELETE FROM oidc_tokens WHERE user_id = $1 AND client_id = $2`} {
		if _, err := tx.ExecContext(ctx, q, userID, clientID); err != nil {
			return err
		}
	}
	return st.commit(tx) // forgets the cached tokens
}

// purgeOIDC deletes the authorization requests and tokens past use.
func (st *store) purgeOIDC(ctx context.Context, now time.Time) error {
	if _, err := st.write.ExecContext(ctx, `DELETE FROM oidc_requests WHERE expiry < $1`, millis(now.Add(-time.Hour))); err != nil {
		return err
	}
	_, err := st.write.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE expiry < $1 AND refresh_expiry < $1`, millis(now))
	return err
}
