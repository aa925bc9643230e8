package main

// store_oidc_keys.go keeps OpenID Connect's keys in the database, so that
// every instance signs with them: the RS256 signing keys (sealed on
// SQLite; a retired one stays in the JWKS until its tokens expire) and the
// key that seals access tokens.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

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
