package main

// users.go is signing up and activating, for the API; pages.go has the pages.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// signupInput is what a signup gives, by the API or the form.
type signupInput struct {
	Name     string      `json:"name"`
	Email    string      `json:"email"`
	Password string      `json:"password"`
	language string      // of the page or request (Accept-Language): the emails' from now on
	returnTo string      // the page asked for before signing up (an allowed return_to, or ""): the welcome email's link carries it
	passkey  *newPasskey // a signup with a passkey instead of a password (passkeys_signup.go)
}

// signup validates a signup and, if it is valid, does what the state of
// the address calls for (store.signup), then starts delivery.
// The answer is the same whoever owns the address, and takes about the
// same time: where no password hash is needed (an activated address, one
// over its send budget, or a client over its emails for the hour) it waits
// as long as a hash takes instead (hasher.imitate). It returns a message
// per invalid field, or an error (errBusy when no hashing slot came free).
func (app *application) signup(ctx context.Context, in signupInput) (errs validator, err error) {
	defer func() { app.metrics.signups.WithLabelValues(signupOutcome(errs, err)).Inc() }()
	v := validator{}
	validateName(v, in.Name)
	validateEmail(v, in.Email)
	if in.passkey == nil {
		validatePassword(v, in.Password)
	}
	app.checkSignupDomain(v, in.Email)
	if len(v) > 0 {
		return v, nil
	}
	if app.cfg.signup == "closed" {
		return nil, errSignupClosed
	}
	state, err := app.store.addressState(ctx, in.Email, app.now())
	if err != nil {
		return nil, err
	}
	// Under -signup invite only an invited address signs up. The others
	// are answered alike and in the same time, and get nothing — but the
	// owner of an activated account, who gets "account exists" as always.
	refused := app.cfg.signup == "invite" && !state.invited && !state.activated
	release, allowed := app.reserveEmail(ctx)
	var hash []byte
	switch {
	case in.passkey != nil:
		hash = []byte{} // no password, and no hash in any state: the same time whoever owns the address
	case state.over || state.activated || refused || !allowed:
		err = app.hasher.imitate(ctx)
	default:
		hash, err = app.hasher.hash(ctx, in.Password)
	}
	if err == nil && refused {
		release()
		app.logger.Info("signup refused: not invited (-signup invite)", "email", in.Email)
		return nil, errNotInvited
	}
	if err == nil && !allowed {
		app.overClientBudget(in.Email, "signup")
		return nil, nil
	}
	if err != nil {
		release()
		return nil, err
	}
	now := app.now().UTC()
	u := &user{CreatedAt: now.Truncate(time.Millisecond), Name: in.Name, Email: in.Email, passwordHash: hash, language: in.language, returnTo: in.returnTo, passkey: in.passkey}
	token, _ := newToken()
	// The welcome email, composed before the transaction so that the
	// templates do not run while it holds the database's one writer.
	welcome, err := app.store.composer.email(kindWelcome, u, token, now)
	if err != nil {
		return nil, err
	}
	kind, err := app.store.signup(ctx, u, welcome)
	if err != nil {
		release()
	}
	if errors.Is(err, errOverBudget) {
		app.overBudget(in.Email, "signup")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	app.logger.Debug("signup", "user_id", u.ID, "email_kind", kind)
	app.outbox.kick()
	return nil, nil
}

// signupOutcome is how the metrics count a signup's answer.
func signupOutcome(errs validator, err error) string {
	switch {
	case errors.Is(err, errSignupClosed), errors.Is(err, errNotInvited):
		return "refused"
	case errors.Is(err, errBusy):
		return "shed"
	case err != nil:
		return "error"
	case len(errs) > 0:
		return "invalid"
	}
	return "accepted"
}

// overBudget logs and counts a request whose email was not sent: its
// address has had its share for now.
func (app *application) overBudget(address, request string) {
	app.metrics.overBudget.WithLabelValues("address").Inc()
	app.logger.Warn("send budget of the address spent: nothing sent, nothing changed", "request", request, "email", address)
}

// overClientBudget logs and counts a request whose email was not sent: its
// client has caused its share of emails for the hour.
func (app *application) overClientBudget(address, request string) {
	app.metrics.overBudget.WithLabelValues("client").Inc()
	app.logger.Warn("emails of the client spent for the hour: nothing sent, nothing changed", "request", request, "email", address,
		"budget", fmt.Sprintf("%d per hour", app.cfg.limiterEmails))
}

// handleSignup signs up a user.
func (app *application) handleSignup(w http.ResponseWriter, r *http.Request) {
	var in signupInput
	if err := app.readJSON(w, r, &in); err != nil {
		app.badRequest(w, r, err)
		return
	}
	in.language = app.accountLanguage(r)
	errs, err := app.signup(r.Context(), in)
	app.answerSignup(w, r, errs, err, http.StatusAccepted, envelope{"message": "check your inbox: an email is on its way with a link to activate your account"})
}

// answerSignup answers a signup by the API (or passkeys.js): 403 while
// signing up is closed; an address not invited as every signup; else as
// answer does.
func (app *application) answerSignup(w http.ResponseWriter, r *http.Request, errs validator, err error, status int, data envelope) {
	if errors.Is(err, errSignupClosed) {
		app.errorResponse(w, r, http.StatusForbidden, err.Error())
		return
	}
	if errors.Is(err, errNotInvited) {
		err = nil // answered as every signup is
	}
	app.answer(w, r, errs, err, status, data)
}

// errNotTheSignupPassword means an activation's password is not the one
// given at signup: the page asks for it again before it becomes the
// account's.
var errNotTheSignupPassword = errors.New("not the password this signup was made with")

// activate activates the pending account holding token, as "Activation
// proves both the inbox and the password" says: the link proves the inbox,
// so whoever holds it ends with the password they typed. With confirmed
// false, a password that is not the signup's is refused with
// errNotTheSignupPassword (the page then asks for it twice); with confirmed
// true (the API, or the page's second step) it becomes the account's
// password. With l set, the person is logged in with that session. It
// returns a message per invalid field (the password's rules, or the
// token), or an error.
func (app *application) activate(ctx context.Context, token, password string, confirmed bool, l *newSession) (*user, validator, error) {
	v := validator{}
	v.check(token != "", "token", "error.required")
	validatePassword(v, password)
	if len(v) > 0 {
		return nil, v, nil
	}
	invalid := validator{"token": "error.activation_token"}
	hash := hashToken(token)
	pending, err := app.store.pendingUser(ctx, hash, app.now())
	if errors.Is(err, errNotFound) {
		return nil, invalid, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var newHash []byte
	if confirmed {
		newHash, err = app.hasher.hash(ctx, password)
	} else {
		var same bool
		same, err = app.hasher.compare(ctx, pending.passwordHash, password)
		if err == nil && !same {
			err = errNotTheSignupPassword
		}
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := app.store.activate(ctx, hash, newHash, nil, l, app.now())
	if errors.Is(err, errNotFound) {
		return nil, invalid, nil
	}
	if err != nil {
		return nil, nil, err
	}
	app.logger.Info("account activated", "user_id", u.ID, "password_set", newHash != nil)
	app.outbox.kickWebhooks() // a change that sends no email
	return u, nil, nil
}

// handleActivate activates the account that holds the token, with the
// password given, which becomes the account's.
func (app *application) handleActivate(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	u, errs, err := app.activate(r.Context(), input.Token, input.Password, true, nil)
	app.answer(w, r, errs, err, http.StatusOK, envelope{"user": u})
}
