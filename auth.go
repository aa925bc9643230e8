package main

// auth.go is logging in (bearer tokens, the login throttle) and resetting
// a forgotten password, for the API; pages.go has the pages.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handleCreateAuthToken logs in: a bearer token for the right email and
// password of an activated account. An unknown address and a wrong password
// get the same 401 in about the same time; a pending account, 403; after
// maxFailedLogins failures on the address in loginWindow, 429 until the
// oldest leaves the window, from any client.
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
	u, retry, err := app.store.beginLogin(r.Context(), input.Email, now)
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
		app.hasher.imitate(r.Context()) // as long as a comparison takes
	} else if match, err = app.hasher.compare(r.Context(), u.passwordHash, input.Password); err != nil {
		app.hashError(w, r, err)
		return
	}
	if !match {
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid authentication credentials")
		return
	}
	if !u.Activated {
		app.errorResponse(w, r, http.StatusForbidden, "your account is not activated yet: open the link in the email we sent you")
		return
	}
	token, hash := newToken()
	if err := app.store.loginSucceeded(r.Context(), u, hash, now); err != nil {
		app.serverError(w, r, err)
		return
	}
	data := envelope{"authentication_token": map[string]any{"token": token, "expiry": now.Add(authTTL).UTC().Truncate(time.Second)}}
	app.writeJSON(w, r, http.StatusCreated, data)
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
	app.answer(w, r, errs, err, http.StatusOK, "your password was reset; log in with the new one")
}
