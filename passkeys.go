package main

// passkeys.go is passkeys (WebAuthn, github.com/go-webauthn/webauthn) for
// a person: adding one from the account page (after the password, and a
// code where two-step verification is on), listing and removing them, and
// the ceremonies every use of one goes through; logging in with one (a
// button on the login page, and the browser's passkey autofill on its
// email field) and confirming with one are in passkeys_login.go. The
// relying party is the host of -base-url. The browser's half is static/passkeys.js, the one script
// signup serves; every password path works without it.
// store_passkeys.go keeps them.

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// passkeysJS is the browser's half: static/passkeys.js.
//
//go:embed static/passkeys.js
var passkeysJS []byte

// handleScript serves passkeys.js, which the Content-Security-Policy
// allows (script-src 'self'); no page has an inline script.
func (app *application) handleScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(passkeysJS)
}

// relyingParty is the WebAuthn relying party of -base-url: its host, its
// origin and -app-name.
func (app *application) relyingParty() (*webauthn.WebAuthn, error) {
	base, err := url.Parse(app.cfg.baseURL)
	if err != nil {
		return nil, err
	}
	return webauthn.New(&webauthn.Config{RPID: base.Hostname(), RPDisplayName: app.cfg.appName,
		RPOrigins: []string{base.Scheme + "://" + base.Host}})
}

// passkeyOwner is an account as go-webauthn sees it, with the user handle
// of the ceremony at hand.
type passkeyOwner struct {
	u      *user
	keys   []passkey
	handle []byte
}

func (o passkeyOwner) WebAuthnID() []byte          { return o.handle }
func (o passkeyOwner) WebAuthnName() string        { return o.u.Email }
func (o passkeyOwner) WebAuthnDisplayName() string { return o.u.Name }
func (o passkeyOwner) WebAuthnCredentials() []webauthn.Credential {
	creds := make([]webauthn.Credential, len(o.keys))
	for i, k := range o.keys {
		creds[i] = k.cred
	}
	return creds
}

// randomHandle is the user handle of a passkey made before its account is
// chosen (a signup's, an activation's): 32 random bytes, which say nothing.
func randomHandle() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// maxPasskeyName is how long a passkey's name may be.
const maxPasskeyName = 100

// beginRegistration answers the options for navigator.credentials.create
// — a discoverable passkey for owner, with user verification, none of its
// passkeys again — and keeps the ceremony c for account id.
func (app *application) beginRegistration(w http.ResponseWriter, r *http.Request, owner passkeyOwner, id int64, c ceremony) {
	rp, err := app.relyingParty()
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range owner.WebAuthnCredentials() {
		exclude = append(exclude, c.Descriptor())
	}
	options, session, err := rp.BeginRegistration(owner, webauthn.WithExclusions(exclude),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{ResidentKey: protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(), UserVerification: protocol.VerificationRequired}))
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	c.SessionData = *session
	token, err := app.store.beginCeremony(r.Context(), id, &c, app.now())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"ceremony": token, "options": options})
}

// madePasskey is the passkey the browser made (raw, as WebAuthn's toJSON
// writes it) for the ceremony c of owner, verified; when it is not one,
// it answers 422 and returns nil.
func (app *application) madePasskey(w http.ResponseWriter, r *http.Request, owner passkeyOwner, c *ceremony, raw json.RawMessage) *webauthn.Credential {
	parsed, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(raw))
	if err != nil {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the browser's passkey cannot be read")
		return nil
	}
	rp, err := app.relyingParty()
	if err != nil {
		app.serverError(w, r, err)
		return nil
	}
	cred, err := rp.CreateCredential(owner, c.SessionData, parsed)
	if err != nil {
		app.logger.Info("passkey refused", "purpose", c.Purpose, "error", err)
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the passkey was not made as asked (user verification is required)")
		return nil
	}
	return cred
}

// beginAssertion answers the options for navigator.credentials.get — user
// verification required; keys, if any, the only passkeys allowed, else any
// of the site's (discoverable) — and keeps the ceremony for account id
// (0 for a login) and purpose.
func (app *application) beginAssertion(w http.ResponseWriter, r *http.Request, id int64, keys []passkey, purpose string, mediation protocol.CredentialMediationRequirement) {
	rp, err := app.relyingParty()
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	opts := []webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationRequired)}
	if len(keys) > 0 {
		allowed := make([]protocol.CredentialDescriptor, len(keys))
		for i, k := range keys {
			allowed[i] = k.cred.Descriptor()
		}
		opts = append(opts, webauthn.WithAllowedCredentials(allowed))
	}
	options, session, err := rp.BeginDiscoverableMediatedLogin(mediation, opts...)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	token, err := app.store.beginCeremony(r.Context(), id, &ceremony{SessionData: *session, Purpose: purpose}, app.now())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"ceremony": token, "options": options})
}

// errNotThisPasskey means an assertion that does not prove a passkey of
// the account it is for.
var errNotThisPasskey = errors.New("no passkey of this account signed it")

// verifyAssertion checks the assertion raw (as WebAuthn's toJSON writes
// it) against the ceremony c: signed for it, with user verification, by a
// passkey still kept here. It returns that passkey's account and the
// passkey, its signature count brought up to date; errNotThisPasskey when
// it proves nothing.
func (app *application) verifyAssertion(r *http.Request, c *ceremony, raw json.RawMessage) (*user, *webauthn.Credential, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNotThisPasskey, err)
	}
	rp, err := app.relyingParty()
	if err != nil {
		return nil, nil, err
	}
	var owner *user
	_, cred, err := rp.ValidatePasskeyLogin(func(id, handle []byte) (webauthn.User, error) {
		u, keys, err := app.store.ownerOfPasskey(r.Context(), id, handle)
		if err != nil {
			return nil, err
		}
		owner = u
		return passkeyOwner{u, keys, handle}, nil
	}, c.SessionData, parsed)
	if err != nil || owner == nil {
		return nil, nil, fmt.Errorf("%w: %v", errNotThisPasskey, err)
	}
	return owner, cred, nil
}

// handlePasskeyAddBegin begins adding a passkey (the account page's form,
// posted by passkeys.js): after the password (and a code), or a passkey's
// confirmation, the options for navigator.credentials.create, and the
// ceremony to send back.
func (app *application) handlePasskeyAddBegin(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	u, _, err := app.browserSession(r)
	if err != nil {
		app.errorResponse(w, r, http.StatusUnauthorized, "log in first")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	v := validator{}
	v.check(name != "", "name", "error.required")
	v.check(len(name) <= maxPasskeyName, "name", "error.name_too_long")
	if len(v) > 0 {
		app.failedValidation(w, r, v)
		return
	}
	if _, err := app.checkPassword(r, u, proofOf(r)); err != nil {
		errs, err := passwordProblem(err, "current_password")
		app.answerChange(w, r, errs, err, 0, nil) // a problem: never the 0
		return
	}
	keys, err := app.store.passkeys(r.Context(), u.ID)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.beginRegistration(w, r, passkeyOwner{u, keys, passkeyHandle(u.ID)}, u.ID, ceremony{Purpose: "add"})
}

// passkeyFinish is what passkeys.js posts back: the ceremony, the
// browser's credential (as WebAuthn's toJSON writes it), for an addition
// its name, for a login or an activation where it continues, and for an
// activation the emailed link's token.
type passkeyFinish struct {
	Ceremony   string          `json:"ceremony"`
	Name       string          `json:"name"`
	ReturnTo   string          `json:"return_to"`
	Token      string          `json:"token"`
	Credential json.RawMessage `json:"credential"`
}

// handlePasskeyAddFinish stores the new passkey the browser made for the
// ceremony, and tells the address and the app.
func (app *application) handlePasskeyAddFinish(w http.ResponseWriter, r *http.Request) {
	u, _, in := app.readFinish(w, r, false)
	if u == nil {
		return
	}
	c, err := app.store.endCeremony(r.Context(), in.Ceremony, u.ID, "add", app.now())
	if app.ceremonyFailed(w, r, err) {
		return
	}
	keys, err := app.store.passkeys(r.Context(), u.ID)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	cred := app.madePasskey(w, r, passkeyOwner{u, keys, passkeyHandle(u.ID)}, c, in.Credential)
	if cred == nil {
		return
	}
	name := strings.TrimSpace(in.Name)
	if name == "" || len(name) > maxPasskeyName {
		name = "Passkey"
	}
	if err := app.store.addPasskey(r.Context(), u, &newPasskey{name, cred, passkeyHandle(u.ID)}, app.now()); err != nil {
		app.serverError(w, r, err)
		return
	}
	app.outbox.kick()
	app.logger.Info("passkey added", "user_id", u.ID)
	app.writeJSON(w, r, http.StatusOK, envelope{"next": "/account"})
}

// ceremonyFailed answers a ceremony that could not be taken — 422 when it
// is gone (too slow, used, or begun for something else) — and reports
// whether there was an error to answer.
func (app *application) ceremonyFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNotFound):
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the passkey took too long: try again")
	default:
		app.serverError(w, r, err)
	}
	return true
}

// handlePasskeyRemove removes a passkey from the account page (the
// password, and a code where two-step verification is on).
func (app *application) handlePasskeyRemove(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "passkeys", func(u *user, s *loginSession) (validator, error) {
		id, err := hex.DecodeString(r.PostForm.Get("id"))
		if err != nil || len(id) == 0 {
			return validator{"id": "error.required"}, nil
		}
		if _, err := app.checkPassword(r, u, proofOf(r)); err != nil {
			return passwordProblem(err, "current_password")
		}
		err = app.store.removePasskey(r.Context(), u, id, app.now())
		if errors.Is(err, errNotFound) {
			return validator{"id": "error.required"}, nil
		}
		if errors.Is(err, errLastCredential) {
			return validator{"form": "error.last_passkey"}, nil
		}
		app.outbox.kick()
		return nil, err
	}, func(u *user, s *loginSession) {
		app.accountPage(w, r, http.StatusOK, u, s, "passkeys", nil, nil, nil, "passkeys.removed")
	})
}

// HexID is the passkey's id as the remove form posts it.
func (p passkey) HexID() string { return hex.EncodeToString(p.ID) }
