package main

// sessions.go is a browser's login: the session cookie, the login and
// logout pages, and where a person goes next (return_to, "Continue to
// <app-name>").

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// sessionCookieName names the session cookie, by what browsers require of
// each prefix: __Host- (Secure, Path=/, no Domain) over HTTPS, __Secure-
// with -cookie-domain, and no prefix over plain HTTP, where a cookie cannot
// be Secure.
func (app *application) sessionCookieName() string {
	switch {
	case !strings.HasPrefix(app.cfg.baseURL, "https://"):
		return "signup_session"
	case app.cfg.cookieDomain != "":
		return "__Secure-signup_session"
	default:
		return "__Host-signup_session"
	}
}

// sessionCookie is the session cookie holding token for maxAge (negative:
// delete it).
func (app *application) sessionCookie(token string, maxAge time.Duration) *http.Cookie {
	c := app.cookie("", token, maxAge) // HttpOnly, SameSite=Lax, Path=/, Secure over HTTPS
	c.Name, c.Domain = app.sessionCookieName(), app.cfg.cookieDomain
	if maxAge < 0 {
		c.MaxAge = -1
	}
	return c
}

// cookieReaches reports whether the session cookie, set by -base-url's
// host, reaches -app-url's: the same host (cookies know no ports), or both
// within -cookie-domain.
func cookieReaches(cfg config) bool {
	base, err1 := url.Parse(cfg.baseURL)
	app, err2 := url.Parse(cfg.appURL)
	if err1 != nil || err2 != nil {
		return true // the config's checks say so
	}
	b, a := strings.ToLower(base.Hostname()), strings.ToLower(app.Hostname())
	if a == b {
		return true
	}
	d := strings.ToLower(strings.TrimPrefix(cfg.cookieDomain, "."))
	within := func(h string) bool { return d != "" && (h == d || strings.HasSuffix(h, "."+d)) }
	return within(a) && within(b)
}

// retryAfter is a Retry-After header's value for a wait of d.
func retryAfter(d time.Duration) string { return strconv.Itoa(int(d.Seconds()) + 1) }

// browserSession returns the user and session of the request's session
// cookie, or errNotFound when it has no live one.
func (app *application) browserSession(r *http.Request) (*user, *loginSession, error) {
	hash := app.sessionHash(r)
	if hash == nil {
		return nil, nil, errNotFound
	}
	return app.store.sessionUser(r.Context(), hash, "session", app.now())
}

// sessionHash is the hash of the request's session cookie, or nil for none.
func (app *application) sessionHash(r *http.Request) []byte {
	c, err := r.Cookie(app.sessionCookieName())
	if err != nil {
		return nil
	}
	return hashToken(c.Value)
}

// startSession sets the cookie of a new session made with token.
func (app *application) startSession(w http.ResponseWriter, token string) {
	http.SetCookie(w, app.sessionCookie(token, app.cfg.sessionLifetime))
}

// returnOrigins are the origins return_to may lead to: -app-url's,
// -base-url's and -return-origins.
func (app *application) returnOrigins() []string {
	origins := append([]string{origin(app.cfg.baseURL)}, app.cfg.returnOrigins...)
	if app.cfg.appURL != "" {
		origins = append(origins, origin(app.cfg.appURL))
	}
	return origins
}

// origin is the scheme and host of the URL s, lower-cased.
func origin(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// returnTo is where a return_to value may lead: a path of this service, or
// a URL whose origin is one of returnOrigins, written out afresh; or ""
// for anything else (another host, //host, javascript:, a backslash, a
// control character or space that browsers would strip), which is ignored.
func (app *application) returnTo(raw string) string {
	if raw == "" || len(raw) > 2000 || strings.ContainsRune(raw, '\\') || strings.ContainsFunc(raw, func(c rune) bool {
		return unicode.IsControl(c) || unicode.IsSpace(c) || c > unicode.MaxASCII
	}) {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return ""
	}
	if u.Scheme == "" && u.Host == "" {
		if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
			return ""
		}
		return u.RequestURI() + fragment(u)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !slices.Contains(app.returnOrigins(), strings.ToLower(u.Scheme+"://"+u.Host)) {
		return ""
	}
	return u.String()
}

// fragment is u's #fragment, if it has one.
func fragment(u *url.URL) string {
	if u.Fragment == "" {
		return ""
	}
	return "#" + u.EscapedFragment()
}

// nextPage is where a person goes after logging in, activating or changing
// the password: -app-url, else the account page.
func (app *application) nextPage() string {
	if app.cfg.appURL != "" {
		return app.cfg.appURL
	}
	return "/account"
}

// continuePage is p with the "Continue to <app>" link (or to the account
// page when there is no -app-url).
func (app *application) continuePage(p page) page {
	if app.cfg.appURL == "" {
		return p.withLink("/account", "continue.account")
	}
	p = p.withLink(app.cfg.appURL, "continue.app")
	if p.Args == nil {
		p.Args = map[string]string{}
	}
	p.Args["App"] = app.appLabel()
	return p
}

// appLabel is how the pages name the app behind signup: -app-name when it
// was given, else -app-url's host — "Continue to Signup" would name this
// service, not the app.
func (app *application) appLabel() string {
	if u, err := url.Parse(app.cfg.appURL); err == nil && u.Hostname() != "" && !app.cfg.appNameGiven {
		return u.Hostname()
	}
	return app.cfg.appName
}

// handleLoginPage shows the login form, return_to kept for after it — or,
// to a browser logged in already, who it is and the way on.
func (app *application) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	// again=1: an app asked for a fresh login (OpenID Connect's
	// prompt=login or max_age), so the form, though logged in.
	if r.URL.Query().Get("again") == "" && app.alreadyLoggedIn(w, r, r.URL.Query().Get("return_to")) {
		return
	}
	app.render(w, r, http.StatusOK, "login.html", page{Title: "login.title",
		Form: map[string]string{"return_to": app.returnTo(r.URL.Query().Get("return_to"))}})
}

// handleLoginForm logs in as the API does, with a session cookie, then
// goes to return_to if it is allowed, else nextPage. Every failure gets the
// same message, with the reminder that an account works once activated.
func (app *application) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	address, password := r.PostForm.Get("email"), r.PostForm.Get("password")
	form := map[string]string{"email": address, "return_to": app.returnTo(r.PostForm.Get("return_to"))}
	v := validator{}
	validateEmail(v, address)
	v.check(password != "", "password", "error.required")
	if len(v) > 0 {
		app.render(w, r, http.StatusUnprocessableEntity, "login.html", page{Title: "login.title", Form: form, Errors: v})
		return
	}
	token, _, err := app.login(w, r, address, password, "session")
	var t throttled
	var step secondStep
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		app.render(w, r, http.StatusTooManyRequests, "login.html", page{Title: "login.title", Form: form,
			Errors: validator{"form": "error.login_throttled"}, Args: map[string]string{"Wait": app.locale(r).inWords(t.retry)}})
	case errors.Is(err, errBadCredentials):
		app.render(w, r, http.StatusUnauthorized, "login.html", page{Title: "login.title", Form: form,
			Errors: validator{"form": "error.login_failed"}, Link: "/resend", LinkText: "signup.lost_link"})
	case errors.Is(err, errDisabled):
		app.render(w, r, http.StatusForbidden, "login.html", page{Title: "login.title", Form: form,
			Errors: validator{"form": "error.login_disabled"}})
	case errors.As(err, &step):
		app.render(w, r, http.StatusOK, "login-code.html", page{Title: "login.code.title", Token: step.challenge, Form: form})
	case err != nil:
		app.pageError(w, r, err)
	default:
		app.loggedInTo(w, r, token, form["return_to"])
	}
}

// loggedInTo gives the browser its new session (token) and sends it on:
// to returnTo (an allowed one), else to the page after a login.
func (app *application) loggedInTo(w http.ResponseWriter, r *http.Request, token, returnTo string) {
	app.startSession(w, token)
	if returnTo == "" {
		returnTo = app.nextPage()
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// handleLogoutForm ends this browser's session, then shows the login page
// — signup's own, when the form was posted on the app's site and a trusted
// proxy brought it here (deploy/nginx.conf and deploy/Caddyfile route the
// app's /logout to signup).
func (app *application) handleLogoutForm(w http.ResponseWriter, r *http.Request) {
	if hash := app.sessionHash(r); hash != nil {
		if err := app.store.logout(r.Context(), hash, "session", app.now()); err != nil {
			app.pageError(w, r, err)
			return
		}
	}
	http.SetCookie(w, app.sessionCookie("", -1))
	to := "/login"
	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	if u, err := url.Parse(app.cfg.baseURL); err == nil && !strings.EqualFold(r.Host, u.Host) && app.trusted(peer.Addr().Unmap()) {
		// Posted on the app's site, whose proxy routes /logout here: on to
		// this service's own login page.
		to = app.cfg.baseURL + "/login"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
