package main

// oidc_pages.go is the person's side of Sign in with signup: the login an
// app's authorization request waits for (/oidc/login: signup's own login
// page, then back), the consent page of a -consent client, and the apps a
// person allowed, on the account page.

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// handleOIDCLogin continues an app's authorization request (op sends the
// browser here): without a session — or, for prompt=login or max_age, a
// fresh enough one — to /login and back; then, for a -consent client not
// yet allowed these scopes (or asking again: prompt=consent), the consent
// page; then to op's callback, which gives the app its code. prompt=none
// gets login_required (or consent_required) at the app's redirect URI
// instead of a page.
func (app *application) handleOIDCLogin(w http.ResponseWriter, r *http.Request) {
	now := app.now()
	req, client, ok := app.oidcRequestOf(w, r, r.URL.Query().Get("id"))
	if !ok {
		return
	}
	u, s, err := app.browserSession(r)
	if err != nil && !errors.Is(err, errNotFound) {
		app.pageError(w, r, err)
		return
	}
	fresh := err == nil
	again := fresh && !s.CreatedAt.Before(time.UnixMilli(req.CreatedAt)) // logged in for this very request
	if fresh && slices.Contains(req.Prompt, "login") {
		fresh = again
	}
	if fresh && req.MaxAge != nil {
		fresh = again || now.Sub(s.CreatedAt) <= time.Duration(*req.MaxAge)*time.Second
	}
	if !fresh {
		if slices.Contains(req.Prompt, "none") {
			app.metrics.oidcAuths.WithLabelValues(client.ID, "login_required").Inc()
			app.oidcError(w, r, req, "login_required")
			return
		}
		app.metrics.oidcAuths.WithLabelValues(client.ID, "login").Inc()
		to := "/login?" + url.Values{"return_to": {r.URL.RequestURI()}}.Encode()
		if err == nil {
			to += "&again=1" // a login asked for again: the form, though logged in
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	if client.Consent {
		given, err := app.store.consented(r.Context(), u.ID, client.ID, req.Scopes)
		if err != nil {
			app.pageError(w, r, err)
			return
		}
		if !given || slices.Contains(req.Prompt, "consent") {
			if slices.Contains(req.Prompt, "none") {
				app.metrics.oidcAuths.WithLabelValues(client.ID, "consent_required").Inc()
				app.oidcError(w, r, req, "consent_required")
				return
			}
			app.metrics.oidcAuths.WithLabelValues(client.ID, "consent").Inc()
			app.consentPage(w, r, req, client, u)
			return
		}
	}
	app.oidcContinue(w, r, req, u, s)
}

// oidcRequestOf is the live authorization request id and its client; when
// there is none it answers a page saying so and reports false.
func (app *application) oidcRequestOf(w http.ResponseWriter, r *http.Request, id string) (*oidcRequest, *oidcClient, bool) {
	req, err := app.store.oidcRequest(r.Context(), id, app.now())
	var client *oidcClient
	if err == nil {
		client, err = app.store.client(r.Context(), req.ClientID)
	}
	switch {
	case errors.Is(err, errNotFound):
		app.showMessage(w, r, http.StatusBadRequest, "oidc.expired.title", "oidc.expired.text")
		return nil, nil, false
	case err != nil:
		app.pageError(w, r, err)
		return nil, nil, false
	}
	return req, client, true
}

// oidcContinue records who logged in for req, and how, and sends the
// browser to op's callback, which redirects to the app with the code.
func (app *application) oidcContinue(w http.ResponseWriter, r *http.Request, req *oidcRequest, u *user, s *loginSession) {
	amr, err := app.store.sessionAMR(r.Context(), s.hash)
	if err == nil {
		err = app.store.loggedInFor(r.Context(), req.ID, u.ID, s.CreatedAt, amr)
	}
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	app.metrics.oidcAuths.WithLabelValues(req.ClientID, "code").Inc()
	http.Redirect(w, r, "/authorize/callback?id="+url.QueryEscape(req.ID), http.StatusSeeOther)
}

// oidcError sends the browser back to the app's registered redirect URI
// with an OAuth error (and the request's state).
func (app *application) oidcError(w http.ResponseWriter, r *http.Request, req *oidcRequest, code string) {
	to, err := url.Parse(req.RedirectURI)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	q := to.Query()
	q.Set("error", code)
	if req.State != "" {
		q.Set("state", req.State)
	}
	to.RawQuery = q.Encode()
	http.Redirect(w, r, to.String(), http.StatusSeeOther)
}

// consentPage asks u whether client may have req's scopes.
func (app *application) consentPage(w http.ResponseWriter, r *http.Request, req *oidcRequest, client *oidcClient, u *user) {
	var lines []string
	for _, scope := range req.Scopes {
		switch scope {
		case "email", "profile", "offline_access":
			lines = append(lines, "oidc.consent.scope."+scope)
		}
	}
	p := page{Title: "oidc.consent.title", Lines: lines, Token: req.ID, LoggedIn: true,
		Args: map[string]string{"App": client.Name, "Email": u.Email}}
	app.render(w, r, http.StatusOK, "consent.html", p)
}

// handleConsentForm is the consent page's answer: allowed, remembered
// (store.consent) and on to the app; denied, access_denied to the app.
func (app *application) handleConsentForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	req, client, ok := app.oidcRequestOf(w, r, r.PostForm.Get("id"))
	if !ok {
		return
	}
	u, s := app.loggedIn(w, r)
	if u == nil {
		return
	}
	switch r.PostForm.Get("action") {
	case "allow":
		if err := app.store.consent(r.Context(), u.ID, client.ID, req.Scopes, app.now()); err != nil {
			app.pageError(w, r, err)
			return
		}
		app.oidcContinue(w, r, req, u, s)
	case "deny":
		app.metrics.oidcAuths.WithLabelValues(client.ID, "denied").Inc()
		app.oidcError(w, r, req, "access_denied")
	default:
		app.showMessage(w, r, http.StatusBadRequest, "badform.title", "badbutton.text")
	}
}

// handleAppRevokeForm withdraws the consent to an app (the account page's
// "Apps"), and ends the tokens it holds.
func (app *application) handleAppRevokeForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "apps", func(u *user, s *loginSession) (validator, error) {
		return nil, app.store.revokeApp(r.Context(), u.ID, r.PostForm.Get("client_id"))
	}, func(u *user, s *loginSession) {
		app.accountPage(w, r, http.StatusOK, u, s, "apps", nil, nil, nil, "apps.revoked")
	})
}

// askBeforeEndSession asks "Log out?" when an app's logout request names
// no one (no id_token_hint) and comes as a GET to a logged-in browser: any
// page can send one (a link, a redirect), and a GET changes nothing. The
// page posts the request back, which sameOrigin lets through from signup's
// own pages only. It reports whether it answered.
func (app *application) askBeforeEndSession(w http.ResponseWriter, r *http.Request) bool {
	query := r.URL.Query()
	if r.Method != http.MethodGet && r.Method != http.MethodHead || query.Get("id_token_hint") != "" {
		return false
	}
	u, _, err := app.browserSession(r)
	if err != nil {
		return false // no session to end
	}
	form := map[string]string{}
	for name := range query {
		form[name] = query.Get(name)
	}
	app.render(w, r, http.StatusOK, "end-session.html", page{Title: "oidc.logout.title", Form: form, LoggedIn: true,
		Args: map[string]string{"Email": u.Email}})
	return true
}
