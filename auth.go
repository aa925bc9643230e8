package main

// auth.go is logging in (bearer tokens, the login throttle) and resetting
// a forgotten password, for the API; pages.go has the pages.

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// deviceTTL is how long a device cookie lasts: the browser that logged in
// to an account with it is held only to its own throttle on that account.
const deviceTTL = 90 * 24 * time.Hour

// handleCreateAuthToken logs in: a bearer token for the right email and
// password of an activated account. An unknown address, a wrong password
// and an account not activated yet get the same 401 in about the same time
// (and are shed alike under load); past the throttle (store_limits.go),
// 429 with Retry-After. A success also gives the browser a device cookie
// of the account, if it has none.
func (app *application) handleCreateAuthToken(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	v := validator{}
	validateEmail(v, input.Email)
	v.check(input.Password != "", "password", "must be provided")
	if len(v) > 0 {
		app.failedValidation(w, r, v)
		return
	}

	now := app.now()
	client, device, err := app.loginClient(r, input.Email)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	u, retry, err := app.store.beginLogin(r.Context(), input.Email, client, device, now)
	if errors.Is(err, errThrottled) {
		app.logger.Warn("login throttled", "email", input.Email, "retry_after", retry.Round(time.Second).String())
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Seconds())+1))
		app.errorResponse(w, r, http.StatusTooManyRequests, "too many failed login attempts for this account; try again later")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	match := false
	if u == nil {
		err = app.hasher.imitate(r.Context()) // as long as a comparison takes
	} else {
		match, err = app.hasher.compare(r.Context(), u.passwordHash, input.Password)
	}
	if err != nil {
		app.hashError(w, r, err)
		return
	}
	if !match || !u.Activated {
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid authentication credentials")
		return
	}
	token, hash := newToken()
	var deviceToken string
	var deviceHash []byte
	if !device {
		deviceToken, deviceHash = newToken()
	}
	err = app.store.loginSucceeded(r.Context(), u, client, u.passwordHash, hash, deviceHash, now)
	if errors.Is(err, errNotFound) { // the password changed while it was checked
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid authentication credentials")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	if deviceToken != "" {
		http.SetCookie(w, app.cookie(deviceCookie, deviceToken, deviceTTL))
	}
	data := envelope{"authentication_token": map[string]any{"token": token, "expiry": now.Add(authTTL).UTC().Truncate(time.Second)}}
	app.writeJSON(w, r, http.StatusCreated, data)
}

// deviceCookie names the cookie that marks a browser that logged in to an
// account before.
const deviceCookie = "signup_device"

// loginClient returns whom a login attempt on address is counted against:
// the request's device cookie when it is one of this account's (device
// true), else the client's address (an IPv6 /64).
func (app *application) loginClient(r *http.Request, address string) (client string, device bool, err error) {
	if c, err := r.Cookie(app.cookieName(deviceCookie)); err == nil {
		if hash := hashToken(c.Value); hash != nil {
			u, err := app.store.userByToken(r.Context(), hash, "device", app.now())
			if err != nil && !errors.Is(err, errNotFound) {
				return "", false, err
			}
			if u != nil && strings.EqualFold(u.Email, address) {
				return "device:" + hex.EncodeToString(hash[:8]), true, nil
			}
		}
	}
	return clientKey(app.clientAddr(r)).String(), false, nil
}

// cookieName is name with the __Host- prefix, which browsers hold to
// Secure, Path=/ and no Domain, when this service is served over HTTPS.
func (app *application) cookieName(name string) string {
	if strings.HasPrefix(app.cfg.baseURL, "https://") {
		return "__Host-" + name
	}
	return name
}

// cookie is a cookie of this service: HttpOnly, SameSite=Lax, Path=/, and
// Secure with the __Host- prefix over HTTPS.
func (app *application) cookie(name, value string, lifetime time.Duration) *http.Cookie {
	return &http.Cookie{Name: app.cookieName(name), Value: value, Path: "/", MaxAge: int(lifetime.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(app.cfg.baseURL, "https://"), SameSite: http.SameSiteLaxMode}
}

// bearer returns the user of the request's bearer token and the token's
// hash, or answers 401 with WWW-Authenticate and returns nil.
func (app *application) bearer(w http.ResponseWriter, r *http.Request) (*user, []byte) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	hash := hashToken(strings.TrimSpace(token))
	var u *user
	var err error
	if ok && hash != nil {
		u, err = app.store.userByToken(r.Context(), hash, "authentication", app.now())
	}
	if err != nil && !errors.Is(err, errNotFound) {
		app.serverError(w, r, err)
		return nil, nil
	}
	if u == nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid or missing authentication token")
		return nil, nil
	}
	return u, hash
}

// handleMe answers the user of the bearer token.
func (app *application) handleMe(w http.ResponseWriter, r *http.Request) {
	u, _ := app.bearer(w, r)
	if u == nil {
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"user": u})
}

// handleDeleteAuthToken logs out: the bearer token is revoked.
func (app *application) handleDeleteAuthToken(w http.ResponseWriter, r *http.Request) {
	u, hash := app.bearer(w, r)
	if u == nil {
		return
	}
	if err := app.store.deleteToken(r.Context(), hash, "authentication"); err != nil {
		app.serverError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requestPasswordReset sends what a password reset for address sends
// (store.requestPasswordReset); the answer is the same whoever owns it.
func (app *application) requestPasswordReset(ctx context.Context, address string) (validator, error) {
	return app.mailAddress(ctx, address, "password reset", func(tokenHash []byte, compose composer) error {
		_, err := app.store.queuePasswordReset(ctx, address, tokenHash, compose)
		return err
	})
}

// handleCreateResetToken asks for a password reset email; the answer is
// the same for any address.
func (app *application) handleCreateResetToken(w http.ResponseWriter, r *http.Request) {
	app.handleEmailRequest(w, r, app.requestPasswordReset,
		"if an account has this address, an email is on its way with a link to reset its password")
}

// resetPassword sets a new password with a reset token. It returns a
// message per invalid field (the password's rules, or the token), or an
// error.
func (app *application) resetPassword(ctx context.Context, token, password string) (validator, error) {
	v := validator{}
	validatePassword(v, password)
	v.check(token != "", "token", "must be provided")
	if len(v) > 0 {
		return v, nil
	}
	invalid := validator{"token": "invalid or expired password reset token"}
	hash := hashToken(token)
	if hash == nil {
		return invalid, nil
	}
	// Check the token before spending a hash on the password.
	if _, err := app.store.userByToken(ctx, hash, "password-reset", app.now()); errors.Is(err, errNotFound) {
		return invalid, nil
	} else if err != nil {
		return nil, err
	}
	passwordHash, err := app.hasher.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	u, err := app.store.setPasswordByToken(ctx, hash, passwordHash, app.now())
	if errors.Is(err, errNotFound) {
		return invalid, nil
	}
	if err != nil {
		return nil, err
	}
	app.logger.Info("password reset", "user_id", u.ID)
	return nil, nil
}

// handleResetPassword sets a new password with a reset token.
func (app *application) handleResetPassword(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Password string `json:"password"`
		Token    string `json:"token"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := app.resetPassword(r.Context(), input.Token, input.Password)
	app.answer(w, r, errs, err, http.StatusOK, envelope{"message": "your password was reset; log in with the new one"})
}
