package main

// passkeys_login.go is a passkey used as proof: logging in with one (no
// address typed), confirming the session with one for the next sensitive
// change (re-authentication), and the assertion checks these and the
// activation of a passkey signup (passkeys_signup.go) share. The
// ceremonies themselves are in passkeys.go.

import (
	"errors"
	"net/http"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// handlePasskeyLoginBegin begins a login with a passkey: the options for
// navigator.credentials.get (discoverable: no address typed; user
// verification required), for a button or, with ?mediation=conditional,
// the browser's autofill.
func (app *application) handlePasskeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	mediation := protocol.MediationDefault
	if r.URL.Query().Get("mediation") == "conditional" {
		mediation = protocol.MediationConditional
	}
	app.beginAssertion(w, r, 0, nil, "login", mediation)
}

// handlePasskeyLoginFinish logs in with the passkey the browser signed the
// ceremony's challenge with, as a password login does (the session cookie,
// the device cookie, on to return_to): an activated account's, not
// disabled, with that passkey still on it. A passkey with user
// verification counts as both steps.
func (app *application) handlePasskeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	var in passkeyFinish
	if err := app.readJSON(w, r, &in); err != nil {
		app.badRequest(w, r, err)
		return
	}
	refuse := func(why string, args ...any) {
		app.logger.Info("passkey login refused: "+why, args...)
		app.metrics.logins.WithLabelValues("failed").Inc()
		app.errorResponse(w, r, http.StatusUnauthorized, "this passkey does not log in here")
	}
	now := app.now()
	c, err := app.store.endCeremony(r.Context(), in.Ceremony, 0, "login", now)
	if errors.Is(err, errNotFound) {
		refuse("no such ceremony")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	owner, cred, err := app.verifyAssertion(r, c, in.Credential)
	if errors.Is(err, errNotThisPasskey) {
		refuse("not validated", "error", err)
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	if !owner.Activated || !owner.disabledAt.IsZero() {
		refuse("account not active", "user_id", owner.ID)
		return
	}
	if err := app.store.passkeyUsed(r.Context(), cred, now); err != nil {
		app.serverError(w, r, err)
		return
	}
	client, device, err := app.loginClient(r, owner.Email)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	token, _, err := app.finishLogin(w, r, owner, client, device, "session", passkeyAMR(cred), now)
	if errors.Is(err, errBadCredentials) {
		refuse("account changed meanwhile", "user_id", owner.ID)
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.metrics.logins.WithLabelValues("ok").Inc()
	app.startSession(w, token)
	next := app.returnTo(in.ReturnTo)
	if next == "" {
		next = app.nextPage()
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"next": next})
}

// handlePasskeyProofBegin begins confirming, with one of the account's
// passkeys, the person about to make a sensitive change (the account
// page's "Confirm with a passkey").
func (app *application) handlePasskeyProofBegin(w http.ResponseWriter, r *http.Request) {
	u, _, err := app.browserSession(r)
	if err != nil {
		app.errorResponse(w, r, http.StatusUnauthorized, "log in first")
		return
	}
	app.beginOwnAssertion(w, r, u, "proof", "this account has no passkey")
}

// beginOwnAssertion begins a ceremony for purpose that one of u's
// passkeys must sign; without one, 422 saying none.
func (app *application) beginOwnAssertion(w http.ResponseWriter, r *http.Request, u *user, purpose, none string) {
	keys, err := app.store.passkeys(r.Context(), u.ID)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	if len(keys) == 0 {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, none)
		return
	}
	app.beginAssertion(w, r, u.ID, keys, purpose, protocol.MediationDefault)
}

// handlePasskeyProofFinish takes the passkey's signature: the session may
// then make one sensitive change without the password, for proofTTL.
func (app *application) handlePasskeyProofFinish(w http.ResponseWriter, r *http.Request) {
	u, s, in := app.readFinish(w, r, false)
	if u == nil || !app.assertedBy(w, r, u, "proof", in, "this passkey is not one of this account's") {
		return
	}
	if err := app.store.proveSession(r.Context(), s.hash, app.now()); err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"next": "/account"})
}

// readFinish reads what passkeys.js posted back, and the account it is
// for: the logged-in person's, or for an activation the pending account of
// the emailed link's token. When there is none, it has answered, and the
// user is nil.
func (app *application) readFinish(w http.ResponseWriter, r *http.Request, activation bool) (*user, *loginSession, passkeyFinish) {
	var in passkeyFinish
	if err := app.readJSON(w, r, &in); err != nil {
		app.badRequest(w, r, err)
		return nil, nil, in
	}
	if activation {
		return app.pendingForPasskey(w, r, in.Token), nil, in
	}
	u, s, err := app.browserSession(r)
	if err != nil {
		app.errorResponse(w, r, http.StatusUnauthorized, "log in first")
		return nil, nil, in
	}
	return u, s, in
}

// assertedBy checks in's assertion against its ceremony for u and purpose:
// signed by one of u's passkeys, which it marks used. When it is not, it
// answers (401, refused) and returns false.
func (app *application) assertedBy(w http.ResponseWriter, r *http.Request, u *user, purpose string, in passkeyFinish, refused string) bool {
	now := app.now()
	c, err := app.store.endCeremony(r.Context(), in.Ceremony, u.ID, purpose, now)
	if app.ceremonyFailed(w, r, err) {
		return false
	}
	owner, cred, err := app.verifyAssertion(r, c, in.Credential)
	if err == nil && owner.ID != u.ID {
		err = errNotThisPasskey
	}
	if errors.Is(err, errNotThisPasskey) {
		app.logger.Info("passkey refused", "purpose", purpose, "user_id", u.ID, "error", err)
		app.errorResponse(w, r, http.StatusUnauthorized, refused)
		return false
	}
	if err == nil {
		err = app.store.passkeyUsed(r.Context(), cred, now)
	}
	if err != nil {
		app.serverError(w, r, err)
		return false
	}
	return true
}

// checkPasskeyProof is checkPassword for a change asked for with no
// password: it spends the session's confirmation by a passkey (which
// stands for both steps), or returns errProofNeeded. It returns the
// account's password hash as it is now, as checkPassword does.
func (app *application) checkPasskeyProof(r *http.Request, u *user) ([]byte, error) {
	hash := app.sessionHash(r)
	if hash == nil {
		return nil, errProofNeeded
	}
	ok, err := app.store.takeProof(r.Context(), hash, app.now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errProofNeeded
	}
	cur, err := app.store.userByID(r.Context(), u.ID)
	if errors.Is(err, errNotFound) {
		return nil, errWrongPassword // gone meanwhile
	}
	if err != nil {
		return nil, err
	}
	return cur.passwordHash, nil
}

// passkeyAMR is how a login with cred is told to apps (OpenID Connect's
// amr): a key kept on its device (hwk) or synced between devices (swk),
// and with user verification both factors (mfa).
func passkeyAMR(cred *webauthn.Credential) string {
	if cred.Flags.BackupEligible {
		return "swk mfa"
	}
	return "hwk mfa"
}
