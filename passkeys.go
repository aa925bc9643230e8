package main

// passkeys.go is passkeys (WebAuthn, github.com/go-webauthn/webauthn) for
// a person: adding one from the account page (after the password, and a
// code where two-step verification is on), listing and removing them, and
// logging in with one — a button on the login page, and the browser's
// passkey autofill on its email field. The relying party is the host of
// -base-url. The browser's half is static/passkeys.js, the one script
// signup serves; every password path works without it.
// store_passkeys.go keeps them.

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// passkeyOwner is an account as go-webauthn sees it.
type passkeyOwner struct {
	u    *user
	keys []passkey
}

func (o passkeyOwner) WebAuthnID() []byte          { return passkeyHandle(o.u.ID) }
func (o passkeyOwner) WebAuthnName() string        { return o.u.Email }
func (o passkeyOwner) WebAuthnDisplayName() string { return o.u.Name }
func (o passkeyOwner) WebAuthnCredentials() []webauthn.Credential {
	creds := make([]webauthn.Credential, len(o.keys))
	for i, k := range o.keys {
		creds[i] = k.cred
	}
	return creds
}

// ownerOf is u with its passkeys, as go-webauthn sees it, and the relying
// party.
func (app *application) ownerOf(r *http.Request, u *user) (*webauthn.WebAuthn, passkeyOwner, error) {
	rp, err := app.relyingParty()
	if err != nil {
		return nil, passkeyOwner{}, err
	}
	keys, err := app.store.passkeys(r.Context(), u.ID)
	return rp, passkeyOwner{u, keys}, err
}

// maxPasskeyName is how long a passkey's name may be.
const maxPasskeyName = 100

// handlePasskeyAddBegin begins adding a passkey (the account page's form,
// posted by passkeys.js): after the password (and a code), the options
// for navigator.credentials.create, and the ceremony to send back.
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
	rp, owner, err := app.ownerOf(r, u)
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
	ceremony, err := app.store.beginCeremony(r.Context(), u.ID, session, app.now())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"ceremony": ceremony, "options": options})
}

// passkeyFinish is what passkeys.js posts back: the ceremony, the
// browser's credential (as WebAuthn's toJSON writes it), and for an
// addition its name, for a login where it continues.
type passkeyFinish struct {
	Ceremony   string          `json:"ceremony"`
	Name       string          `json:"name"`
	ReturnTo   string          `json:"return_to"`
	Credential json.RawMessage `json:"credential"`
}

// handlePasskeyAddFinish stores the new passkey the browser made for the
// ceremony, and tells the address and the app.
func (app *application) handlePasskeyAddFinish(w http.ResponseWriter, r *http.Request) {
	u, _, err := app.browserSession(r)
	if err != nil {
		app.errorResponse(w, r, http.StatusUnauthorized, "log in first")
		return
	}
	var in passkeyFinish
	if err := app.readJSON(w, r, &in); err != nil {
		app.badRequest(w, r, err)
		return
	}
	session, err := app.store.endCeremony(r.Context(), in.Ceremony, u.ID, app.now())
	if errors.Is(err, errNotFound) {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the passkey took too long: try again")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(in.Credential))
	if err != nil {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the browser's passkey cannot be read")
		return
	}
	rp, owner, err := app.ownerOf(r, u)
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	cred, err := rp.CreateCredential(owner, *session, parsed)
	if err != nil {
		app.logger.Info("passkey refused", "user_id", u.ID, "error", err)
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the passkey was not made as asked (user verification is required)")
		return
	}
	name := strings.TrimSpace(in.Name)
	if name == "" || len(name) > maxPasskeyName {
		name = "Passkey"
	}
	if err := app.store.addPasskey(r.Context(), u, name, cred, app.now()); err != nil {
		app.serverError(w, r, err)
		return
	}
	app.outbox.kick()
	app.logger.Info("passkey added", "user_id", u.ID)
	app.writeJSON(w, r, http.StatusOK, envelope{"next": "/account"})
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
		app.outbox.kick()
		return nil, err
	}, func(u *user, s *loginSession) {
		app.accountPage(w, r, http.StatusOK, u, s, "passkeys", nil, nil, nil, "passkeys.removed")
	})
}

// handlePasskeyLoginBegin begins a login with a passkey: the options for
// navigator.credentials.get (discoverable: no address typed; user
// verification required), for a button or, with ?mediation=conditional,
// the browser's autofill.
func (app *application) handlePasskeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	rp, err := app.relyingParty()
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	mediation := protocol.MediationDefault
	if r.URL.Query().Get("mediation") == "conditional" {
		mediation = protocol.MediationConditional
	}
	options, session, err := rp.BeginDiscoverableMediatedLogin(mediation, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	ceremony, err := app.store.beginCeremony(r.Context(), 0, session, app.now())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"ceremony": ceremony, "options": options})
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
	session, err := app.store.endCeremony(r.Context(), in.Ceremony, 0, now)
	if errors.Is(err, errNotFound) {
		refuse("no such ceremony")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(in.Credential))
	if err != nil {
		refuse("unreadable", "error", err)
		return
	}
	rp, err := app.relyingParty()
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	var owner *user
	found, cred, err := rp.ValidatePasskeyLogin(func(_, handle []byte) (webauthn.User, error) {
		u, keys, err := app.store.userOfHandle(r.Context(), handle)
		if err != nil {
			return nil, err
		}
		owner = u
		return passkeyOwner{u, keys}, nil
	}, *session, parsed)
	if err != nil || found == nil || owner == nil {
		refuse("not validated", "error", err)
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
	token, _, err := app.finishLogin(w, r, owner, client, device, "session", now)
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

// HexID is the passkey's id as the remove form posts it.
func (p passkey) HexID() string { return hex.EncodeToString(p.ID) }
