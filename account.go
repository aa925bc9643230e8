package main

// account.go is what a logged-in person does to their account, on the
// account page and by the API alike: change the password, change the
// address (confirmed by both addresses), end sessions, delete the account.

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// errWrongPassword means the current password typed to change an account
// is not its password.
var errWrongPassword = errors.New("not the account's password")

// proof is what a person gives before a sensitive change: the current
// password, and a code (or a recovery code) where two-step verification
// is on — or, on the pages, a passkey that has just confirmed the session
// (passkey: no password typed, so the session's confirmation is spent).
type proof struct {
	password, code string
	passkey        bool
}

// given reports whether p offers anything to check.
func (p proof) given() bool { return p.password != "" || p.passkey }

// proofOf is the proof a page's form posted: the password typed, or,
// with none, the passkey that confirmed the session.
func proofOf(r *http.Request) proof {
	password := r.PostForm.Get("current_password")
	return proof{password, r.PostForm.Get("code"), password == ""}
}

// errProofNeeded means a change asked for without the password, and
// without a passkey's confirmation of the session.
var errProofNeeded = errors.New("neither the password nor a passkey")

// checkPassword checks p before a change to u: that its password is u's
// current password and, where two-step verification is on, that its code
// is good (twostep.go) — both counted by the login throttle as a login is
// (a stolen session cannot guess them any faster), against the session's
// own count rather than the account's. It returns the password hash it
// was compared with, for the change to be made only if it is still the
// account's; errWrongPassword, errCodeNeeded, errWrongCode, or a
// throttled error. A passkey's confirmation stands for both (passkeys.go:
// checkPasskeyProof).
func (app *application) checkPassword(r *http.Request, u *user, p proof) ([]byte, error) {
	if p.passkey {
		return app.checkPasskeyProof(r, u)
	}
	password := p.password
	client, device, err := app.loginClient(r, u.Email)
	if err != nil {
		return nil, err
	}
	if !device {
		// A logged-in person is held to their own session's count, as a
		// device is: strangers' guesses at the login never lock the owner
		// out of their own account.
		hash := app.sessionHash(r)
		if hash == nil {
			hash = bearerHash(r)
		}
		if hash != nil {
			client, device = "session:"+hex.EncodeToString(hash[:8]), true
		}
	}
	cur, retry, err := app.store.beginLogin(r.Context(), u.Email, client, device, app.now())
	if errors.Is(err, errThrottled) {
		app.logger.Warn("password check throttled", "user_id", u.ID, "retry_after", retry.Round(1e9).String())
		return nil, throttled{retry}
	}
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.ID != u.ID {
		return nil, errWrongPassword // the account changed its address or is gone
	}
	match, err := app.hasher.compare(r.Context(), cur.passwordHash, password)
	if err != nil {
		return nil, err
	}
	if !match {
		return nil, errWrongPassword
	}
	if err := app.store.passwordChecked(r.Context(), u.Email, client); err != nil {
		return nil, err
	}
	return cur.passwordHash, app.checkSecondStep(r, cur, p.code, client, device)
}

// passwordProblem turns checkPassword's error into a message for the field
// field, or returns it as it is.
func passwordProblem(err error, field string) (validator, error) {
	switch {
	case errors.Is(err, errWrongPassword):
		return validator{field: "error.not_current_password"}, nil
	case errors.Is(err, errProofNeeded):
		return validator{field: "error.required"}, nil
	case errors.Is(err, errCodeNeeded):
		return validator{"code": "error.code_needed"}, nil
	case errors.Is(err, errWrongCode):
		return validator{"code": "error.wrong_code"}, nil
	}
	return nil, err
}

// changePassword gives u the new password, if current is its password:
// every other session and token ends (s, the one asking, stays), and the
// address gets the password-changed email.
func (app *application) changePassword(r *http.Request, u *user, s *loginSession, current proof, password string) (validator, error) {
	v := validator{}
	v.check(current.given(), "current_password", "error.required")
	validatePassword(v, password)
	if len(v) > 0 {
		return v, nil
	}
	checked, err := app.checkPassword(r, u, current)
	if err != nil {
		return passwordProblem(err, "current_password")
	}
	newHash, err := app.hasher.hash(r.Context(), password)
	if err != nil {
		return nil, err
	}
	err = app.store.changePassword(r.Context(), u, checked, newHash, s.hash, app.now())
	if errors.Is(err, errNotFound) {
		return validator{"current_password": "error.not_current_password"}, nil // changed meanwhile
	}
	if err != nil {
		return nil, app.noticeRefused(err, u.Email, "password change")
	}
	app.logger.Info("password changed", "user_id", u.ID)
	app.outbox.kick()
	return nil, nil
}

// errNoticeOverBudget refuses a change whose notice the address's send
// budget has no room for: the inbox must hear of a change made with the
// password alone, so nothing changes, and the person may try again within
// the hour.
var errNoticeOverBudget = errors.New("the address has had its share of emails for now")

// noticeSkipped logs and counts a notice not sent for the budget of its
// address (the old one, for an address change), where the change stands:
// the inbox took part in it.
func (app *application) noticeSkipped(address, request string) {
	app.metrics.overBudget.WithLabelValues("address").Inc()
	args := []any{"request", request}
	if address != "" {
		args = append(args, "email", address)
	}
	app.logger.Warn("send budget of the address spent: the change is made, its notice not sent", args...)
}

// noticeRefused is err, or errNoticeOverBudget (logged) for errOverBudget.
func (app *application) noticeRefused(err error, address, request string) error {
	if !errors.Is(err, errOverBudget) {
		return err
	}
	app.metrics.overBudget.WithLabelValues("address").Inc()
	app.logger.Warn("send budget of the address spent: change refused, since its notice cannot be sent", "request", request, "email", address)
	return errNoticeOverBudget
}

// requestEmailChange starts moving u to the address newAddress, if current is its
// password: a confirmation link to each address (or, if newAddress has an
// account, the account-exists email to its owner). The answer is the same
// whoever owns newAddress, and over a budget.
func (app *application) requestEmailChange(r *http.Request, u *user, current proof, newAddress string) (validator, error) {
	v := validator{}
	validateEmail(v, newAddress)
	v.check(current.given(), "current_password", "error.required")
	if len(v) > 0 {
		return v, nil
	}
	if strings.EqualFold(newAddress, u.Email) {
		return validator{"email": "error.already_your_address"}, nil
	}
	checked, err := app.checkPassword(r, u, current)
	if err != nil {
		return passwordProblem(err, "current_password")
	}
	release, allowed := app.reserveEmail(r.Context())
	if !allowed {
		app.overClientBudget(newAddress, "email change")
		return nil, nil
	}
	tokenOld, _ := newToken()
	tokenNew, _ := newToken()
	sentNew, err := app.store.requestEmailChange(r.Context(), u, newAddress, checked, tokenOld, tokenNew, app.now())
	if err != nil {
		release()
	}
	switch {
	case errors.Is(err, errNotFound):
		return validator{"current_password": "error.not_current_password"}, nil // changed meanwhile
	case errors.Is(err, errCurrentOverBudget):
		return nil, app.noticeRefused(errOverBudget, u.Email, "email change")
	case err != nil:
		return nil, err
	case !sentNew: // the same answer whoever owns newAddress
		app.overBudget(newAddress, "email change")
	}
	app.logger.Info("email change asked", "user_id", u.ID)
	app.outbox.kick()
	return nil, nil
}

// invalidChangeToken is the message for a dead address-change link.
const invalidChangeToken = "error.change_token"

// confirmEmailChange confirms the half of an address change that token is for;
// it reports whether the change took effect (both halves confirmed), and
// whether its notice to the old address was skipped (its owner's allowance
// spent).
func (app *application) confirmEmailChange(ctx context.Context, token string) (done, skipped bool, errs validator, err error) {
	invalid := validator{"token": invalidChangeToken}
	hash := hashToken(token)
	if hash == nil {
		return false, false, invalid, nil
	}
	done, sent, err := app.store.confirmEmailChange(ctx, hash, app.now())
	switch {
	case errors.Is(err, errNotFound):
		return false, false, invalid, nil
	case errors.Is(err, errAddressTaken):
		return false, false, validator{"token": "error.change_taken"}, nil
	case err != nil:
		return false, false, nil, err
	}
	if done {
		app.logger.Info("email changed")
		if !sent {
			app.noticeSkipped("", "email change")
		}
		app.outbox.kick()
	}
	return done, done && !sent, nil, nil
}

// deleteAccount deletes u with everything of it, if current is its
// password, and emails the address that it is gone.
func (app *application) deleteAccount(r *http.Request, u *user, current proof) (validator, error) {
	if !current.given() {
		return validator{"current_password": "error.required"}, nil
	}
	checked, err := app.checkPassword(r, u, current)
	if err != nil {
		return passwordProblem(err, "current_password")
	}
	err = app.store.deleteAccount(r.Context(), u, checked, app.now())
	if errors.Is(err, errNotFound) {
		return validator{"current_password": "error.not_current_password"}, nil
	}
	if err != nil {
		return nil, app.noticeRefused(err, u.Email, "account deletion")
	}
	app.logger.Info("account deleted", "user_id", u.ID)
	app.outbox.kick()
	return nil, nil
}

// answerChange answers an account change by the API: 429 past the
// throttle, else as answer does.
func (app *application) answerChange(w http.ResponseWriter, r *http.Request, errs validator, err error, status int, data envelope) {
	var t throttled
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		app.errorResponse(w, r, http.StatusTooManyRequests, "too many failed password attempts for this account; try again later")
		return
	case errors.Is(err, errNoticeOverBudget):
		w.Header().Set("Retry-After", "3600")
		app.errorResponse(w, r, http.StatusTooManyRequests, "nothing changed: the account's address has had its share of emails for now, and must get one about this; try again within the hour")
		return
	}
	if status == http.StatusNoContent && err == nil && len(errs) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	app.answer(w, r, errs, err, status, data)
}

// handleChangePassword is PUT /v1/users/me/password.
func (app *application) handleChangePassword(w http.ResponseWriter, r *http.Request, u *user, s *loginSession) {
	var input struct {
		CurrentPassword string `json:"current_password"`
		Code            string `json:"code"` // where two-step verification is on
		Password        string `json:"password"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := app.changePassword(r, u, s, proof{password: input.CurrentPassword, code: input.Code}, input.Password)
	app.answerChange(w, r, errs, err, http.StatusOK, envelope{"message": "your password is changed; every other session and token of the account is ended"})
}

// handleRequestEmailChange is POST /v1/users/me/email.
func (app *application) handleRequestEmailChange(w http.ResponseWriter, r *http.Request, u *user, _ *loginSession) {
	var input struct {
		Email           string `json:"email"`
		CurrentPassword string `json:"current_password"`
		Code            string `json:"code"` // where two-step verification is on
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := app.requestEmailChange(r, u, proof{password: input.CurrentPassword, code: input.Code}, input.Email)
	app.answerChange(w, r, errs, err, http.StatusAccepted, envelope{"message": "a link is on its way to each address: the change takes effect when both are confirmed"})
}

// handleConfirmEmailChange is PUT /v1/users/email: one half of an address change.
func (app *application) handleConfirmEmailChange(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Token string `json:"token"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	if input.Token == "" {
		app.failedValidation(w, r, validator{"token": "error.required"})
		return
	}
	done, _, errs, err := app.confirmEmailChange(r.Context(), input.Token)
	msg := "this address's half of the change is confirmed; the change takes effect when the other address confirms it too"
	if done {
		msg = "the change is confirmed by both addresses: the account has its new address"
	}
	app.answer(w, r, errs, err, http.StatusOK, envelope{"message": msg})
}

// handleDeleteAccount is DELETE /v1/users/me.
func (app *application) handleDeleteAccount(w http.ResponseWriter, r *http.Request, u *user, _ *loginSession) {
	var input struct {
		CurrentPassword string `json:"current_password"`
		Code            string `json:"code"` // where two-step verification is on
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := app.deleteAccount(r, u, proof{password: input.CurrentPassword, code: input.Code})
	app.answerChange(w, r, errs, err, http.StatusNoContent, nil)
}

// handleSessions is GET /v1/users/me/sessions.
func (app *application) handleSessions(w http.ResponseWriter, r *http.Request, u *user, s *loginSession) {
	list, err := app.store.sessions(r.Context(), u.ID, s.hash, app.now())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"sessions": list})
}

// handleEndSession is DELETE /v1/users/me/sessions/{id}.
func (app *application) handleEndSession(w http.ResponseWriter, r *http.Request, u *user, _ *loginSession) {
	err := app.store.endSession(r.Context(), u.ID, r.PathValue("id"), app.now())
	switch {
	case errors.Is(err, errNotFound):
		app.errorResponse(w, r, http.StatusNotFound, "no session of this account has this id")
	case err != nil:
		app.serverError(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
