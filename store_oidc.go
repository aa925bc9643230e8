package main

// store_oidc.go keeps what Sign in with signup (OpenID Connect, oidc.go)
// needs in the database, so that every instance shares it: the clients
// the operator registered, the signing keys, the authorization requests
// and their codes, the tokens issued to apps, and the consents people gave.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// oidcClient is an app registered by the operator (`signup clients add`).
type oidcClient struct {
	ID           string    `json:"client_id"`
	Name         string    `json:"name"`
	RedirectURIs []string  `json:"redirect_uris"`
	LogoutURIs   []string  `json:"post_logout_redirect_uris"`
	Public       bool      `json:"public"`
	Consent      bool      `json:"consent"`
	CreatedAt    time.Time `json:"created_at"`
	secretHash   []byte
}

// clientColumns are the columns scanClient reads, in its order.
const clientColumns = `id, name, secret_hash, redirect_uris, logout_uris, consent, created_at`

func scanClient(row interface{ Scan(...any) error }) (*oidcClient, error) {
	var c oidcClient
	var redirects, logouts string
	var created int64
	err := row.Scan(&c.ID, &c.Name, &c.secretHash, &redirects, &logouts, &c.Consent, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	c.RedirectURIs, c.LogoutURIs = strings.Fields(redirects), strings.Fields(logouts)
	c.Public = len(c.secretHash) == 0
	c.CreatedAt = time.UnixMilli(created).UTC()
	return &c, nil
}

// newClientID is a new client's id: 16 random bytes in hex.
func newClientID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hashSecret is a client secret's SHA-256: a random 256-bit secret needs
// no slow hash, and a slow one would cost every token request.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// addClient registers c, with the secret's hash (nil: a public client).
func (st *store) addClient(ctx context.Context, c *oidcClient, secretHash []byte) error {
	_, err := st.write.ExecContext(ctx, `INSERT INTO oidc_clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, c.Name, secretHash, strings.Join(c.RedirectURIs, " "), strings.Join(c.LogoutURIs, " "), boolInt(c.Consent), millis(c.CreatedAt))
	return err
}

// clients lists the registered clients, the oldest first.
func (st *store) clients(ctx context.Context) ([]oidcClient, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT `+clientColumns+` FROM oidc_clients ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []oidcClient
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, *c)
	}
	return list, rows.Err()
}

// client returns the client with this id, or errNotFound.
func (st *store) client(ctx context.Context, id string) (*oidcClient, error) {
	return scanClient(st.read.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM oidc_clients WHERE id = $1`, id))
}

// removeClient deletes the client with this id, its tokens and consents;
// errNotFound for none.
func (st *store) removeClient(ctx context.Context, id string) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM oidc_clients WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	for _, q := range []string{`DELETE FROM oidc_tokens WHERE client_id = $1`, `DELETE FROM oidc_requests WHERE client_id = $1`} {
		if _, err := tx.ExecContext(ctx, q, id); err != nil {
			return err
		}
	}
	return st.commit(tx) // forgets the cached tokens
}

// setClientSecret gives the confidential client id a new secret's hash;
// errNotFound for no such confidential client.
func (st *store) setClientSecret(ctx context.Context, id string, secretHash []byte) error {
	res, err := st.write.ExecContext(ctx, `UPDATE oidc_clients SET secret_hash = $1 WHERE id = $2 AND secret_hash IS NOT NULL`, secretHash, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// clientOrigins are the origins of every registered redirect URI, for the
// login and consent pages' form-action.
func (st *store) clientOrigins(ctx context.Context) ([]string, error) {
	if st == nil {
		return nil, nil
	}
	rows, err := st.read.QueryContext(ctx, `SELECT redirect_uris FROM oidc_clients`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var origins []string
	for rows.Next() {
		var uris string
		if err := rows.Scan(&uris); err != nil {
			return nil, err
		}
		for _, uri := range strings.Fields(uris) {
			if u, err := url.Parse(uri); err == nil && u.Host != "" && !slices.Contains(origins, u.Scheme+"://"+u.Host) {
				origins = append(origins, u.Scheme+"://"+u.Host)
			}
		}
	}
	return origins, rows.Err()
}

// signingKey is an RS256 key of the provider; retired (rotated out) keys
// stay in the JWKS until the tokens they signed have expired.
type signingKey struct {
	id      string
	key     *rsa.PrivateKey
	retired time.Time // zero: the one that signs
}

// cryptoKeyID is the id of the key that encrypts access tokens.
const cryptoKeyID = "access-tokens"

// ensureKeys makes, at first start, the first signing key and the key
// that encrypts access tokens; an instance starting beside another waits
// for it and finds them made.
func (st *store) ensureKeys(ctx context.Context, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, "oidc-keys"); err != nil { // one instance at a time (PostgreSQL)
		return err
	}
	var signing, crypto bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM oidc_keys WHERE kind = 'rsa'), EXISTS (SELECT 1 FROM oidc_keys WHERE kind = 'crypto')`).
		Scan(&signing, &crypto); err != nil {
		return err
	}
	if !crypto {
		secret := make([]byte, 32)
		rand.Read(secret)
		// In hex: an unsealed secret never starts as a sealed one does.
		if _, err := tx.ExecContext(ctx, `INSERT INTO oidc_keys (id, kind, secret, created_at) VALUES ($1, 'crypto', $2, $3)`,
			cryptoKeyID, st.sealMessage([]byte(hex.EncodeToString(secret))), millis(now)); err != nil {
			return err
		}
	}
	if !signing {
		if err := st.insertSigningKey(ctx, tx, now); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// insertSigningKey makes a new RSA key (2048 bits) that signs from now on.
func (st *store) insertSigningKey(ctx context.Context, tx *sql.Tx, now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	rand.Read(id)
	_, err = tx.ExecContext(ctx, `INSERT INTO oidc_keys (id, kind, secret, created_at) VALUES ($1, 'rsa', $2, $3)`,
		hex.EncodeToString(id), st.sealMessage(der), millis(now))
	return err
}

// rotateKey retires the signing key and makes a new one, in one
// transaction; it returns the new key's id.
func (st *store) rotateKey(ctx context.Context, now time.Time) (string, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE oidc_keys SET retired_at = $1 WHERE kind = 'rsa' AND retired_at IS NULL`, millis(now)); err != nil {
		return "", err
	}
	if err := st.insertSigningKey(ctx, tx, now); err != nil {
		return "", err
	}
	var id string
	if err := tx.QueryRowContext(ctx, `SELECT id FROM oidc_keys WHERE kind = 'rsa' AND retired_at IS NULL`).Scan(&id); err != nil {
		return "", err
	}
	return id, tx.Commit()
}

// signingKeys returns the signing keys retired after since (and the one
// that signs, first), for the JWKS.
func (st *store) signingKeys(ctx context.Context, since time.Time) ([]signingKey, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT id, secret, retired_at FROM oidc_keys
		WHERE kind = 'rsa' AND (retired_at IS NULL OR retired_at > $1) ORDER BY retired_at IS NOT NULL, created_at DESC`, millis(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []signingKey
	for rows.Next() {
		var k signingKey
		var secret []byte
		var retired sql.NullInt64
		if err := rows.Scan(&k.id, &secret, &retired); err != nil {
			return nil, err
		}
		if k.key, err = parsedKey(k.id, secret, st.openMessage); err != nil {
			return nil, err
		}
		if retired.Valid {
			k.retired = time.UnixMilli(retired.Int64).UTC()
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// parsedKeys are the signing keys parsed, by id: a key never changes, and
// parsing one (its checks) costs as much as a signature.
var parsedKeys sync.Map // id → *rsa.PrivateKey

// parsedKey is the RSA key id, stored as secret (sealed, PKCS #8).
func parsedKey(id string, secret []byte, open func([]byte) ([]byte, error)) (*rsa.PrivateKey, error) {
	if k, ok := parsedKeys.Load(id); ok {
		return k.(*rsa.PrivateKey), nil
	}
	der, err := open(secret)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("signing key " + id + " is not an RSA key")
	}
	parsedKeys.Store(id, key)
	return key, nil
}

// cryptoKey returns the key that encrypts access tokens.
func (st *store) cryptoKey(ctx context.Context) ([32]byte, error) {
	var key [32]byte
	var secret []byte
	if err := st.read.QueryRowContext(ctx, `SELECT secret FROM oidc_keys WHERE id = $1`, cryptoKeyID).Scan(&secret); err != nil {
		return key, err
	}
	sealed, err := st.openMessage(secret)
	if err != nil {
		return key, err
	}
	plain, err := hex.DecodeString(string(sealed))
	if err == nil && len(plain) != len(key) {
		err = errors.New("the access tokens' key has the wrong size")
	}
	copy(key[:], plain)
	return key, err
}

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
// until refreshExpiry. For a code's grant (fromCode) it takes the code in
// the same transaction — once on every instance, even when two uses race
// (one UPDATE): the second finds it taken, revokes what the first issued
// and returns errCodeReused.
func (st *store) createToken(ctx context.Context, t *oidcToken, fromCode bool, refreshHash []byte, refreshExpiry time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if fromCode {
		res, err := tx.ExecContext(ctx, `UPDATE oidc_requests SET used = 1 WHERE id = $1 AND used = 0`, t.RequestID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			tx.Rollback()
			return st.revokeCode(ctx, t.RequestID)
		}
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
func (st *store) accessToken(ctx context.Context, id string, now time.Time) (*oidcToken, *user, error) {
	key := sha256.Sum256([]byte("oidc-access-token:" + id))
	if c, ok := st.cache.get(key[:]); ok && c.token != nil {
		if !now.Before(c.token.Expiry) {
			return nil, nil, errNotFound
		}
		t, u := *c.token, c.u
		return &t, &u, nil
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
		return nil, nil, errNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	t.UserID, t.Scopes, t.AMR = u.ID, strings.Fields(scopes), strings.Fields(amr)
	t.AuthTime, t.Expiry = time.UnixMilli(authTime).UTC(), time.UnixMilli(expiry).UTC()
	u.CreatedAt, u.Activated = time.UnixMilli(created).UTC(), true
	cached := t
	st.cache.put(key[:], cachedSession{u: u, token: &cached, expiry: t.Expiry}, gen)
	return &t, &u, nil
}

// errRefreshReused means a refresh token used before: its whole family is
// revoked.
var errRefreshReused = errors.New("refresh token used before")

// takeRefresh takes the live refresh token with this hash (once: it is
// rotated) and returns its grant; one used before revokes its family
// (errRefreshReused).
func (st *store) takeRefresh(ctx context.Context, refreshHash []byte, now time.Time) (*oidcToken, error) {
	t, err := scanOIDCToken(st.write.QueryRowContext(ctx, `UPDATE oidc_tokens SET used = 1
		WHERE refresh_hash = $1 AND used = 0 AND refresh_expiry > $2 RETURNING `+oidcTokenColumns, refreshHash, millis(now)))
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
	_, err = st.write.ExecContext(ctx, `DELETE FROM oidc_tokens WHERE family = $1`, family)
	st.cache.forget()
	if err != nil {
		return nil, err
	}
	return nil, errRefreshReused
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
