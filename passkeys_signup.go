package main

// passkeys_signup.go is signing up with a passkey instead of a password,
// and activating with one. The signup makes the passkey before any account
// is chosen (its user handle is random), then does what a password signup
// does (app.signup): the same answer whoever owns the address, and the
// welcome email, whose link still proves the inbox. The activation page
// asks for that passkey — or lets the link's holder make a passkey (or
// choose a password) of their own, which replaces the signup's: whoever
// activates ends with the credential they hold.

import (
	"errors"
	"net/http"
	"net/url"
)

// passkeySignup is what a passkey signup's ceremony keeps of the form.
type passkeySignup struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Language string `json:"language"`
	ReturnTo string `json:"return_to"`
}

// handlePasskeySignupBegin checks the signup form (posted by passkeys.js,
// with no password) as a signup does, and answers the options for the
// browser to make a passkey.
func (app *application) handlePasskeySignupBegin(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	in := passkeySignup{Name: r.PostForm.Get("name"), Email: r.PostForm.Get("email"),
		Language: app.accountLanguage(r), ReturnTo: app.returnTo(r.PostForm.Get("return_to"))}
	v := validator{}
	validateName(v, in.Name)
	validateEmail(v, in.Email)
	app.checkSignupDomain(v, in.Email)
	if len(v) > 0 {
		app.failedValidation(w, r, v)
		return
	}
	if app.cfg.signup == "closed" {
		app.errorResponse(w, r, http.StatusForbidden, errSignupClosed.Error())
		return
	}
	owner := passkeyOwner{u: &user{Name: in.Name, Email: in.Email}, handle: randomHandle()}
	app.beginRegistration(w, r, owner, 0, ceremony{Purpose: "signup", Signup: &in})
}

// handlePasskeySignupFinish signs up with the passkey the browser made, as
// a password signup does, and sends the browser to the page that says an
// email is on its way.
func (app *application) handlePasskeySignupFinish(w http.ResponseWriter, r *http.Request) {
	var fin passkeyFinish
	if err := app.readJSON(w, r, &fin); err != nil {
		app.badRequest(w, r, err)
		return
	}
	c, err := app.store.endCeremony(r.Context(), fin.Ceremony, 0, "signup", app.now())
	if app.ceremonyFailed(w, r, err) {
		return
	}
	if c.Signup == nil {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "the passkey took too long: try again")
		return
	}
	s := c.Signup
	cred := app.madePasskey(w, r, passkeyOwner{u: &user{Name: s.Name, Email: s.Email}, handle: c.UserID}, c, fin.Credential)
	if cred == nil {
		return
	}
	name, _ := app.templates.localeOf(&user{language: s.Language}).t("passkeys.default_name", nil)
	in := signupInput{Name: s.Name, Email: s.Email, language: s.Language, returnTo: s.ReturnTo,
		passkey: &newPasskey{name: name.(string), cred: cred, handle: c.UserID}}
	errs, err := app.signup(r.Context(), in)
	app.answerSignup(w, r, errs, err, http.StatusOK, envelope{"next": "/signup/sent?" + url.Values{"email": {s.Email}}.Encode()})
}

// handleSignupSent is the page a passkey signup ends on, as a password
// signup's does: an email is on its way to the address.
func (app *application) handleSignupSent(w http.ResponseWriter, r *http.Request) {
	address := r.URL.Query().Get("email")
	v := validator{}
	if validateEmail(v, address); len(v) > 0 {
		address = ""
	}
	p := pageOf("signup.sent.title", "signup.sent.text", "signup.sent.expiry").withLink("/resend", "signup.lost_link")
	p.Args = map[string]string{"Email": address}
	app.render(w, r, http.StatusOK, "message.html", p)
}

// pendingForPasskey is the pending account of the activation link's token
// posted (a form's, or passkeyFinish's); when there is none, it answers
// 422 and returns nil.
func (app *application) pendingForPasskey(w http.ResponseWriter, r *http.Request, token string) *user {
	u, err := app.store.pendingUser(r.Context(), hashToken(token), app.now())
	switch {
	case errors.Is(err, errNotFound):
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "this link no longer works: ask for a new one")
		return nil
	case err != nil:
		app.serverError(w, r, err)
		return nil
	}
	return u
}

// handleActivatePasskeyBegin begins activating with the passkey the
// account signed up with (the activation page's button).
func (app *application) handleActivatePasskeyBegin(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	if u := app.pendingForPasskey(w, r, r.PostForm.Get("token")); u != nil {
		app.beginOwnAssertion(w, r, u, "activate", "this signup has no passkey: choose a password or a new passkey")
	}
}

// handleActivatePasskeyFinish activates with the signup's passkey, and
// logs in.
func (app *application) handleActivatePasskeyFinish(w http.ResponseWriter, r *http.Request) {
	u, _, in := app.readFinish(w, r, true)
	if u == nil || !app.assertedBy(w, r, u, "activate", in, "this passkey is not the one this signup was made with") {
		return
	}
	app.activateByPasskey(w, r, in, nil)
}

// handleActivateNewPasskeyBegin begins activating with a new passkey of
// the link's holder, in place of the signup's password or passkey.
func (app *application) handleActivateNewPasskeyBegin(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	u := app.pendingForPasskey(w, r, r.PostForm.Get("token"))
	if u == nil {
		return
	}
	app.beginRegistration(w, r, passkeyOwner{u: u, handle: randomHandle()}, u.ID, ceremony{Purpose: "activate-new"})
}

// handleActivateNewPasskeyFinish activates with the new passkey the
// browser made, which replaces the signup's credentials, and logs in.
func (app *application) handleActivateNewPasskeyFinish(w http.ResponseWriter, r *http.Request) {
	u, _, in := app.readFinish(w, r, true)
	if u == nil {
		return
	}
	c, err := app.store.endCeremony(r.Context(), in.Ceremony, u.ID, "activate-new", app.now())
	if app.ceremonyFailed(w, r, err) {
		return
	}
	cred := app.madePasskey(w, r, passkeyOwner{u: u, handle: c.UserID}, c, in.Credential)
	if cred == nil {
		return
	}
	name, _ := app.templates.localeOf(u).t("passkeys.default_name", nil)
	app.activateByPasskey(w, r, in, &newPasskey{name: name.(string), cred: cred, handle: c.UserID})
}

// activateByPasskey activates the account of in's token — with key in
// place of its credentials, or as it is — logs in, and sends the browser
// on: to the page asked for before signing up, else -app-url or the
// account page.
func (app *application) activateByPasskey(w http.ResponseWriter, r *http.Request, in passkeyFinish, key *newPasskey) {
	sessionToken, l := app.newLogin(r, "session", app.now())
	l.amr = "hwk mfa"
	u, err := app.store.activate(r.Context(), hashToken(in.Token), nil, key, l, app.now())
	if errors.Is(err, errNotFound) {
		app.errorResponse(w, r, http.StatusUnprocessableEntity, "this link no longer works: ask for a new one")
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	app.logger.Info("account activated", "user_id", u.ID, "passkey", true, "new_passkey", key != nil)
	app.outbox.kickWebhooks() // a change that sends no email
	app.startSession(w, sessionToken)
	next := app.returnTo(in.ReturnTo)
	if next == "" {
		next = app.nextPage()
	}
	app.writeJSON(w, r, http.StatusOK, envelope{"next": next})
}
