package main

// auth.go is logging in (bearer tokens, the login throttle) and resetting
// a forgotten password, for the API; pages.go has the pages.

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// deviceTTL is how long a device cookie lasts: the browser that logged in
// to an account with it is held only to its own throttle on that account.
const deviceTTL = 90 * 24 * time.Hour

// errBadCredentials is every failed login's answer: an unknown address, a
// wrong password and an account not activated yet alike.
var errBadCredentials = errors.New("invalid authentication credentials")

// errDisabled answers the right password of an account the operator
// disabled.
var errDisabled = errors.New("this account has been disabled")

// throttled is a login refused by the throttle, and for how long.
type throttled struct{ retry time.Duration }

func (t throttled) Error() string { return errThrottled.Error() }
func (t throttled) Unwrap() error { return errThrottled }

// login logs in with email and password: a new session of scope ("session"
// for a browser's cookie, "authentication" for a bearer token), whose token
// it returns with its expiry. An unknown address, a wrong password and an
// account not activated yet are all errBadCredentials, in about the same
// time (and shed alike under load); past the throttle (store_limits.go), a
// throttled error. A success also gives the browser a device cookie of the
// account, if it has none.
func (app *application) login(w http.ResponseWriter, r *http.Request, email, password, scope string) (token string, expiry time.Time, err error) {
	defer func() {
		switch {
		case errors.Is(err, errThrottled):
			app.metrics.logins.WithLabelValues("throttled").Inc()
		case errors.Is(err, errBadCredentials):
			app.metrics.logins.WithLabelValues("failed").Inc()
		case errors.Is(err, errDisabled):
			app.metrics.logins.WithLabelValues("disabled").Inc()
		case errors.As(err, new(secondStep)):
			app.metrics.logins.WithLabelValues("second_step").Inc()
		case err == nil:
			app.metrics.logins.WithLabelValues("ok").Inc()
		}
	}()
	now := app.now()
	client, device, err := app.loginClient(r, email)
	if err != nil {
		return "", time.Time{}, err
	}
	u, retry, err := app.store.beginLogin(r.Context(), email, client, device, now)
	if errors.Is(err, errThrottled) {
		app.logger.Warn("login throttled", "email", email, "retry_after", retry.Round(time.Second).String())
		return "", time.Time{}, throttled{retry}
	}
	if err != nil {
		return "", time.Time{}, err
	}
	match := false
	if u == nil {
		err = app.hasher.imitate(r.Context()) // as long as a comparison takes
	} else {
		match, err = app.hasher.compare(r.Context(), u.passwordHash, password)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	if u != nil && !match {
		_, l := app.newLogin(r, scope, now)
		if err := app.store.loginFailed(r.Context(), u.ID, l.address, l.userAgent, now); err != nil {
			app.logger.Warn("could not record a failed login in the account's activity", "user_id", u.ID, "error", err)
		}
	}
	if !match || !u.Activated {
		return "", time.Time{}, errBadCredentials
	}
	if !u.disabledAt.IsZero() {
		return "", time.Time{}, errDisabled // told only to whoever typed the right password
	}
	state, err := app.store.twoStep(r.Context(), u.ID)
	if err != nil {
		return "", time.Time{}, err
	}
	if state.On {
		return "", time.Time{}, app.challenge(r.Context(), u)
	}
	return app.finishLogin(w, r, u, client, device, scope, "pwd", now)
}

// finishLogin makes the session of scope for u, whose password (and code,
// where two-step verification is on) was right, from client, and gives
// the browser a device cookie of the account if device is not set.
func (app *application) finishLogin(w http.ResponseWriter, r *http.Request, u *user, client string, device bool, scope, amr string, now time.Time) (string, time.Time, error) {
	token, l := app.newLogin(r, scope, now)
	l.amr = amr
	var deviceToken string
	var deviceCookieToken *linkToken
	if !device {
		deviceToken, deviceCookieToken = app.newDevice()
	}
	err := app.store.loginSucceeded(r.Context(), u, client, u.passwordHash, l, deviceCookieToken, now)
	if errors.Is(err, errNotFound) { // the password changed while it was checked
		return "", time.Time{}, errBadCredentials
	}
	if err != nil {
		return "", time.Time{}, err
	}
	if deviceToken != "" {
		http.SetCookie(w, app.cookie(deviceCookie, deviceToken, deviceTTL))
	}
	app.logger.Info("logged in", "user_id", u.ID, "session", scope)
	return token, l.expiry, nil
}

// newLogin makes a session of scope for the client of r: its token, and
// what the store keeps of it.
func (app *application) newLogin(r *http.Request, scope string, now time.Time) (string, *newSession) {
	token, hash := newToken()
	ttl := authTTL
	if scope == "session" {
		ttl = app.cfg.sessionLifetime
	}
	var address string
	if a := clientKey(app.clientAddr(r)); a.IsValid() {
		address = a.String()
	}
	return token, &newSession{hash: hash, scope: scope, expiry: now.Add(ttl), userAgent: r.UserAgent(), address: address}
}

// handleLogin logs in: a bearer token for the right email and
// password of an activated account (login); 401 for any failure, 429 with
// Retry-After past the throttle.
func (app *application) handleLogin(w http.ResponseWriter, r *http.Request) {
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
	v.check(input.Password != "", "password", "error.required")
	if len(v) > 0 {
		app.failedValidation(w, r, v)
		return
	}
	token, expiry, err := app.login(w, r, input.Email, input.Password, "authentication")
	var t throttled
	var step secondStep
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		app.errorResponse(w, r, http.StatusTooManyRequests, "too many failed login attempts for this account; try again later")
	case errors.Is(err, errBadCredentials):
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid authentication credentials")
	case errors.Is(err, errDisabled):
		app.errorResponse(w, r, http.StatusForbidden, "this account has been disabled")
	case errors.As(err, &step):
		app.writeJSON(w, r, http.StatusAccepted, envelope{"two_step": map[string]any{"challenge": step.challenge, "expiry": step.expiry.UTC().Truncate(time.Second)},
			"message": "two-step verification is on: POST the challenge and a code to /v1/tokens/two-step"})
	case err != nil:
		app.serverError(w, r, err)
	default:
		data := envelope{"authentication_token": map[string]any{"token": token, "expiry": expiry.UTC().Truncate(time.Second)}}
		app.writeJSON(w, r, http.StatusCreated, data)
	}
}

// deviceCookie names the cookie that marks a browser that logged in to an
// account before (or reset its password by the emailed link).
const deviceCookie = "signup_device"

// newDevice is a new device token: for the cookie, and as the store keeps
// it.
func (app *application) newDevice() (string, *linkToken) {
	token, hash := newToken()
	return token, &linkToken{hash: hash, scope: "device", expiry: app.now().Add(deviceTTL)}
}

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

// bearerHash is the hash of the request's bearer token, or nil for none.
// The scheme's case does not matter (RFC 7235): "bearer" is "Bearer".
func bearerHash(r *http.Request) []byte {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return hashToken(strings.TrimSpace(token))
}

// requireBearer wraps a handler of the API that needs a live bearer
// token: it is given the token's user and session; without one the
// request is answered 401 with WWW-Authenticate.
func (app *application) requireBearer(next func(w http.ResponseWriter, r *http.Request, u *user, s *loginSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var u *user
		var s *loginSession
		var err error
		if hash := bearerHash(r); hash != nil {
			u, s, err = app.store.sessionUser(r.Context(), hash, "authentication", app.now())
		}
		if err != nil && !errors.Is(err, errNotFound) {
			app.serverError(w, r, err)
			return
		}
		if u == nil {
			w.Header().Set("WWW-Authenticate", "Bearer")
			app.errorResponse(w, r, http.StatusUnauthorized, "invalid or missing authentication token")
			return
		}
		next(w, r, u, s)
	}
}

// handleMe answers the user of the bearer token.
func (app *application) handleMe(w http.ResponseWriter, r *http.Request, u *user, _ *loginSession) {
	app.writeJSON(w, r, http.StatusOK, envelope{"user": u})
}

// handleLogout logs out: the bearer token is revoked.
func (app *application) handleLogout(w http.ResponseWriter, r *http.Request, u *user, s *loginSession) {
	if err := app.store.logout(r.Context(), s.hash, "authentication", app.now()); err != nil {
		app.serverError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requestPasswordReset sends what a password reset for address sends
// (store.requestPasswordReset); the answer is the same whoever owns it.
func (app *application) requestPasswordReset(ctx context.Context, address string) (validator, error) {
	return app.emailRequest(ctx, address, "password reset", func(token string, now time.Time) error {
		_, err := app.store.requestPasswordReset(ctx, address, token, now)
		return err
	})
}

// handleRequestPasswordReset asks for a password reset email; the answer is
// the same for any address.
func (app *application) handleRequestPasswordReset(w http.ResponseWriter, r *http.Request) {
	app.handleEmailRequest(w, r, app.requestPasswordReset,
		"if an account has this address, an email is on its way with a link to reset its password")
}

// resetPassword sets a new password with a reset token, and stores device
// (when set) as the device token of the browser that reset: the inbox
// proved the owner. It returns a message per invalid field (the password's
// rules, or the token), or an error; and skipped, when its notice to the
// address was not sent (the owner's allowance was spent).
func (app *application) resetPassword(ctx context.Context, token, password string, device *linkToken) (errs validator, skipped bool, err error) {
	v := validator{}
	validatePassword(v, password)
	v.check(token != "", "token", "error.required")
	if len(v) > 0 {
		return v, false, nil
	}
	invalid := validator{"token": "error.reset_token"}
	hash := hashToken(token)
	if hash == nil {
		return invalid, false, nil
	}
	// Check the token before spending a hash on the password.
	if _, err := app.store.userByToken(ctx, hash, "password-reset", app.now()); errors.Is(err, errNotFound) {
		return invalid, false, nil
	} else if err != nil {
		return nil, false, err
	}
	passwordHash, err := app.hasher.hash(ctx, password)
	if err != nil {
		return nil, false, err
	}
	u, sent, err := app.store.resetPassword(ctx, hash, passwordHash, device, app.now())
	if errors.Is(err, errNotFound) {
		return invalid, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	app.logger.Info("password reset", "user_id", u.ID)
	if !sent {
		app.noticeSkipped(u.Email, "password reset")
	}
	app.outbox.kick()
	return nil, !sent, nil
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
	errs, _, err := app.resetPassword(r.Context(), input.Token, input.Password, nil)
	app.answer(w, r, errs, err, http.StatusOK, envelope{"message": "your password was reset; log in with the new one"})
}
