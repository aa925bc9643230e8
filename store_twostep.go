package main

// store_twostep.go keeps two-step verification: each account's TOTP
// secret (sealed where messages are), the last time step accepted (no
// code twice, on every instance), its recovery codes (hashes, each good
// once), and the challenges a login with the right password waits on.

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP as every authenticator app does it: 6 digits, 30-second steps,
// SHA-1, and a step of clock drift either way.
const (
	totpPeriod = 30
	totpSkew   = 1
)

// totpCode is the code of secret (base32) for time step.
func totpCode(secret string, step int64) (string, error) {
	return totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totp.ValidateOpts{
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// twoStepState is an account's two-step verification as its page shows it.
type twoStepState struct {
	On        bool
	Since     time.Time
	CodesLeft int    // recovery codes not used yet
	pending   string // a secret waiting for its first code; "" for none
}

// twoStep reads account id's two-step verification.
func (st *store) twoStep(ctx context.Context, id int64) (twoStepState, error) {
	var s twoStepState
	var secret []byte
	var enabled sql.NullInt64
	err := st.read.QueryRowContext(ctx, `SELECT secret, enabled_at, (SELECT count(*) FROM recovery_codes WHERE user_id = $1) FROM two_step WHERE user_id = $1`, id).
		Scan(&secret, &enabled, &s.CodesLeft)
	if errors.Is(err, sql.ErrNoRows) {
		return twoStepState{}, nil
	}
	if err != nil {
		return s, err
	}
	if enabled.Valid {
		s.On, s.Since = true, time.UnixMilli(enabled.Int64).UTC()
		return s, nil
	}
	plain, err := st.openMessage(secret)
	s.pending = string(plain)
	return s, err
}

// startTwoStep keeps secret as account id's, waiting for its first code —
// unless two-step verification is on already (errAlready).
func (st *store) startTwoStep(ctx context.Context, id int64, secret string) error {
	res, err := st.write.ExecContext(ctx, `INSERT INTO two_step (user_id, secret) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = 0 WHERE two_step.enabled_at IS NULL`,
		id, st.sealMessage([]byte(secret)))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errAlready
	}
	return nil
}

// matchTOTP returns the time step, within the drift allowed around now,
// whose code of secret is code, and after last; 0 for none.
func matchTOTP(secret, code string, last int64, now time.Time) int64 {
	step := now.Unix() / totpPeriod
	for s := step - totpSkew; s <= step+totpSkew; s++ {
		want, err := totpCode(secret, s)
		if err == nil && s > last && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return s
		}
	}
	return 0
}

// enableTwoStep turns on u's two-step verification if code is a code of
// the secret waiting for it: the secret's step is taken, recoveryHashes
// become its recovery codes, and the email, the event and the activity
// entry go with it. It reports whether the code was right.
func (st *store) enableTwoStep(ctx context.Context, u *user, code string, recoveryHashes [][]byte, now time.Time) (bool, error) {
	s, err := st.twoStep(ctx, u.ID)
	if err != nil || s.pending == "" {
		return false, err
	}
	step := matchTOTP(s.pending, code, 0, now)
	if step == 0 {
		return false, nil
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE two_step SET enabled_at = $1, last_step = $2 WHERE user_id = $3 AND enabled_at IS NULL`, millis(now), step, u.ID)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // turned on meanwhile
	}
	if err := replaceRecoveryCodes(ctx, tx, u.ID, recoveryHashes); err != nil {
		return false, err
	}
	if err := recordActivity(ctx, tx, u.ID, activityTwoStepOn, now, "", ""); err != nil {
		return false, err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindTwoStepOn, to: u, event: eventTwoStepOn, about: u, now: now})
	return err == nil, err
}

// replaceRecoveryCodes makes hashes account id's recovery codes, in tx.
func replaceRecoveryCodes(ctx context.Context, tx *sql.Tx, id int64, hashes [][]byte) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, id); err != nil {
		return err
	}
	for _, h := range hashes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)`, id, h); err != nil {
			return err
		}
	}
	return nil
}

// renewRecoveryCodes makes hashes u's recovery codes in place of the old
// ones, while two-step verification is on (errNotFound when it is not).
func (st *store) renewRecoveryCodes(ctx context.Context, u *user, hashes [][]byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var on int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM two_step WHERE user_id = $1 AND enabled_at IS NOT NULL`, u.ID).Scan(&on); err != nil {
		return err
	}
	if on == 0 {
		return errNotFound
	}
	if err := replaceRecoveryCodes(ctx, tx, u.ID, hashes); err != nil {
		return err
	}
	if err := recordActivity(ctx, tx, u.ID, activityRecoveryRenewed, now, "", ""); err != nil {
		return err
	}
	return st.commit(tx)
}

// disableTwoStep turns off u's two-step verification, with its recovery
// codes and challenges, and tells the address and the app.
func (st *store) disableTwoStep(ctx context.Context, u *user, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := changeOne(ctx, tx, `DELETE FROM two_step WHERE user_id = $1 AND enabled_at IS NOT NULL`, u.ID); err != nil {
		return err
	}
	for _, q := range []string{`DELETE FROM recovery_codes WHERE user_id = $1`, `DELETE FROM tokens WHERE user_id = $1 AND scope = 'two-step'`} {
		if _, err := tx.ExecContext(ctx, q, u.ID); err != nil {
			return err
		}
	}
	if err := recordActivity(ctx, tx, u.ID, activityTwoStepOff, now, "", ""); err != nil {
		return err
	}
	_, err = st.tell(ctx, tx, notice{kind: kindTwoStepOff, to: u, event: eventTwoStepOff, about: u, now: now})
	return err
}

// useCode takes code as u's second step at now: a TOTP code of a step
// after the last one taken (the step is taken at once, so that no other
// request, on any instance, takes the same code), or an unused recovery
// code (deleted, and told to the address and the app). It reports whether
// the code was good.
func (st *store) useCode(ctx context.Context, u *user, code string, now time.Time) (bool, error) {
	var secret []byte
	var last int64
	err := st.read.QueryRowContext(ctx, `SELECT secret, last_step FROM two_step WHERE user_id = $1 AND enabled_at IS NOT NULL`, u.ID).Scan(&secret, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(code) == 6 {
		plain, err := st.openMessage(secret)
		if err != nil {
			return false, err
		}
		step := matchTOTP(string(plain), code, last, now)
		if step == 0 {
			return false, nil
		}
		res, err := st.write.ExecContext(ctx, `UPDATE two_step SET last_step = $1 WHERE user_id = $2 AND last_step < $1`, step, u.ID)
		if err != nil {
			return false, err
		}
		n, _ := res.RowsAffected()
		return n == 1, nil
	}
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2`, u.ID, recoveryHash(code))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if err := recordActivity(ctx, tx, u.ID, activityRecoveryUsed, now, "", ""); err != nil {
		return false, err
	}
	// The owner's own allowance; over it the code still counts: the
	// person holding it is the owner, stuck without their phone.
	_, err = st.tell(ctx, tx, notice{kind: kindRecoveryUsed, to: u, skippable: true, event: eventRecoveryUsed, about: u, now: now})
	return err == nil, err
}

// newChallenge stores, for a login whose password was right, the
// challenge (a token's hash) that the second step exchanges, valid until
// expiry.
func (st *store) newChallenge(ctx context.Context, id int64, hash []byte, expiry time.Time) error {
	_, err := st.write.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, scope, expiry) VALUES ($1, $2, 'two-step', $3)`, hash, id, millis(expiry))
	return err
}

// endChallenge deletes the challenge with this hash: its login is made.
func (st *store) endChallenge(ctx context.Context, hash []byte) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE hash = $1 AND scope = 'two-step'`, hash)
	return err
}

// challengeUser returns the account waiting on the live challenge with
// this hash, or errNotFound.
func (st *store) challengeUser(ctx context.Context, hash []byte, now time.Time) (*user, error) {
	return st.userByToken(ctx, hash, "two-step", now)
}
