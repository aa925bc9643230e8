package main

// store_oidc_clients.go keeps the apps that sign people in through signup
// (OpenID Connect clients, registered by `signup clients`): their secrets
// as SHA-256, their redirect URIs, matched exactly.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
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
