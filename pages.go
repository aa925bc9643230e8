package main

// pages.go is the HTML pages a person uses: sign up, activate from the
// emailed link, ask for a new link, reset a forgotten password.

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"time"
)

// page is what a page template is given: the fields each page uses. The
// handlers give Title, Lines, LinkText and Errors as message keys, with
// Args for the messages' data; render writes them in the page's language.
type page struct {
	AppName    string
	locale     *locale        // its language: .Lang, $.T, $.FieldError, $.FormatTime
	Switch     []languageLink // the other languages offered: this page in each
	Title      string
	Lines      []string          // paragraphs (message.html, resend.html)
	Link       string            // a link under them, and its text
	LinkText   string            //
	Args       map[string]string // the data of those messages ({{.Email}}, …)
	Form       map[string]string // values to show again in the form
	Errors     map[string]string // a message per field
	Name       string            // activate.html: the signup's name and time
	SignedUpAt time.Time         //
	Token      string            // activate.html, reset-password.html, confirm-email.html: posted back by its buttons
	Account    *user             // account.html: whose account, since when,
	Since      time.Time         //
	Languages  []languageLink    // the languages offered, its emails' marked Current, and its sessions
	Sessions   []loginSession    //
	Activity   []activityEntry   // account.html: the newest first
	TwoStep    twoStepState      // account.html: two-step verification
	Codes      []string          // two-step-codes.html: recovery codes, shown once
	Passkeys   []passkey         // account.html: the oldest first
	Proven     bool              // account.html: a passkey has confirmed the session for the next change
	Apps       []allowedApp      // account.html: the apps the person allowed
	LoggedIn   bool              // layout.html: the header offers the account, else the login
}

// pageHeaders are sent with every page: no script, style or image from
// elsewhere, no framing, and no Referer, since links carry tokens. The
// Content-Security-Policy is app.contentSecurityPolicy.
var pageHeaders = map[string]string{
	"Referrer-Policy":        "no-referrer",
	"X-Content-Type-Options": "nosniff",
	"Content-Type":           "text/html; charset=utf-8",
	"Cache-Control":          "no-store",
}

// render sends page name with status, in the language of r.
func (app *application) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	l := app.locale(r)
	app.keepLanguage(w, r)
	p.AppName, p.Switch = app.cfg.appName, app.languageLinks(r, l)
	if !p.LoggedIn {
		_, _, err := app.browserSession(r)
		p.LoggedIn = err == nil
	}
	var buf bytes.Buffer
	err := l.page(&p)
	if err == nil {
		err = app.templates.pages[l.tag][name].ExecuteTemplate(&buf, "layout.html", p)
	}
	if err != nil {
		app.logger.Error("render page", "page", name, "method", r.Method, "path", r.URL.Path, "error", err)
		http.Error(w, "the server encountered a problem and could not process your request", http.StatusInternalServerError)
		return
	}
	for k, v := range pageHeaders {
		w.Header().Set(k, v)
	}
	var apps []string
	if name == "login.html" || name == "login-code.html" || name == "consent.html" || name == "end-session.html" {
		// A login, a consent or a logout may continue to an app's
		// registered redirect URI (OpenID Connect), a redirect that
		// browsers hold to form-action.
		apps, _ = app.store.clientOrigins(r.Context()) // none on failure: the app's page is refused, no more
	}
	w.Header().Set("Content-Security-Policy", app.contentSecurityPolicy(apps...))
	w.Header().Set("Content-Language", l.tag)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// contentSecurityPolicy is every page's: nothing from elsewhere, and forms
// that post here only — and may be redirected to the allowed return
// origins and apps' origins, since browsers hold a form's redirect to
// form-action too (a login that continues to the app).
func (app *application) contentSecurityPolicy(apps ...string) string {
	sources := "'self'"
	for _, o := range slices.Concat(app.returnOrigins()[1:], apps) {
		sources += " " + o
	}
	return "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action " + sources + "; frame-ancestors 'none'"
}

// pageOf is a message page: a title and its paragraphs, as message keys.
func pageOf(title string, lines ...string) page { return page{Title: title, Lines: lines} }

// withLink is p with a link under its paragraphs.
func (p page) withLink(href, text string) page {
	p.Link, p.LinkText = href, text
	return p
}

// showMessage renders message.html: a title and its paragraphs, as message keys.
func (app *application) showMessage(w http.ResponseWriter, r *http.Request, status int, title string, lines ...string) {
	app.render(w, r, status, "message.html", page{Title: title, Lines: lines})
}

// pageError renders the page for an error that is not the person's
// doing, as serverError answers the API.
func (app *application) pageError(w http.ResponseWriter, r *http.Request, err error) {
	switch app.classify(r, err) {
	case failureBusy:
		w.Header().Set("Retry-After", "1")
		app.showMessage(w, r, http.StatusServiceUnavailable, "busy.title", "busy.text")
	case failureUnavailable:
		w.Header().Set("Retry-After", "5")
		app.showMessage(w, r, http.StatusServiceUnavailable, "unavailable.title", "unavailable.text")
	case failureInternal:
		app.showMessage(w, r, http.StatusInternalServerError, "internal.title", "internal.text")
	}
}

// readForm parses a posted form of at most maxBodyBytes. When it cannot,
// it answers a page that says so and returns false.
func (app *application) readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		app.showMessage(w, r, http.StatusBadRequest, "badform.title", "badform.text")
		return false
	}
	return true
}

// handleStyle serves the stylesheet.
func (app *application) handleStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(app.templates.css)
}

// handleFavicon answers the icon browsers ask for with nothing, for a day:
// the pages have no icon, and a 404 on every page view is noise.
func (app *application) handleFavicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.WriteHeader(http.StatusNoContent)
}

// handleRoot sends a visitor to the account page when logged in, else to
// the login page, which links to the signup form.
func (app *application) handleRoot(w http.ResponseWriter, r *http.Request) {
	app.keepLanguage(w, r)
	_, _, err := app.browserSession(r)
	switch {
	case err == nil:
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	case errors.Is(err, errNotFound):
		http.Redirect(w, r, "/login", http.StatusSeeOther) // with its link to sign up
	default:
		app.pageError(w, r, err)
	}
}

// alreadyLoggedIn answers a page meant for someone logged out (the signup
// and login forms) when the browser is logged in: who it is, and the way
// on — to next when that is an allowed return_to, else to the account
// page. It reports whether it answered.
func (app *application) alreadyLoggedIn(w http.ResponseWriter, r *http.Request, next string) bool {
	u, _, err := app.browserSession(r)
	if err != nil {
		return false
	}
	p := pageOf("loggedin.title", "loggedin.text").withLink("/account", "loggedin.account")
	if to := app.returnTo(next); to != "" {
		p = p.withLink(to, "loggedin.continue")
	}
	p.Args, p.LoggedIn = map[string]string{"Email": u.Email}, true
	app.render(w, r, http.StatusOK, "message.html", p)
	return true
}

// handleSignupPage shows the signup form.
func (app *application) handleSignupPage(w http.ResponseWriter, r *http.Request) {
	if app.alreadyLoggedIn(w, r, "") {
		return
	}
	if app.cfg.signup == "closed" {
		app.showMessage(w, r, http.StatusOK, "signup.closed.title", "signup.closed.text")
		return
	}
	app.render(w, r, http.StatusOK, "signup.html", app.signupPage(page{Title: "signup.title",
		Form: map[string]string{"return_to": app.returnTo(r.URL.Query().Get("return_to"))}}))
}

// handleSignupForm signs up exactly as POST /v1/users does.
func (app *application) handleSignupForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	in := signupInput{Name: r.PostForm.Get("name"), Email: r.PostForm.Get("email"), Password: r.PostForm.Get("password"),
		language: app.accountLanguage(r), returnTo: app.returnTo(r.PostForm.Get("return_to"))}
	errs, err := app.signup(r.Context(), in)
	if errors.Is(err, errSignupClosed) {
		app.showMessage(w, r, http.StatusForbidden, "signup.closed.title", "signup.closed.text")
		return
	}
	if errors.Is(err, errNotInvited) {
		err = nil // answered as every signup is
	}
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	if len(errs) > 0 {
		app.render(w, r, http.StatusUnprocessableEntity, "signup.html", app.signupPage(page{Title: "signup.title",
			Form: map[string]string{"name": in.Name, "email": in.Email, "return_to": in.returnTo}, Errors: errs}))
		return
	}
	p := pageOf("signup.sent.title", "signup.sent.text", "signup.sent.expiry").withLink("/resend", "signup.lost_link")
	p.Args = map[string]string{"Email": in.Email}
	app.render(w, r, http.StatusOK, "message.html", p)
}

// linkFailed answers a failed look-up by an emailed link's token: dead's
// page when the token does not work (errNotFound), else pageError's. It
// reports whether there was an error to answer.
func (app *application) linkFailed(w http.ResponseWriter, r *http.Request, err error, dead func(http.ResponseWriter, *http.Request)) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNotFound):
		dead(w, r)
	default:
		app.pageError(w, r, err)
	}
	return true
}

// invalidLink renders the resend form, saying that the link did not work.
func (app *application) invalidLink(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusUnprocessableEntity, "resend.html", page{Title: "link.dead.title",
		Lines: []string{"link.dead.activation", "link.dead.activation_resend"}})
}

// handleActivatePage shows whose signup the link in the email is for, with
// the buttons that act on it. It never uses the token: mail scanners fetch
// every link (with GET or HEAD), and a person has not chosen yet.
func (app *application) handleActivatePage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	u, err := app.store.pendingUser(r.Context(), hashToken(token), app.now())
	if app.linkFailed(w, r, err, app.invalidLink) {
		return
	}
	p := page{Title: "activate.title", Name: u.Name, SignedUpAt: u.CreatedAt, Token: token, Form: map[string]string{"return_to": app.returnTo(r.URL.Query().Get("return_to"))}}
	if err := app.activationChoices(r, &p, u); err != nil {
		app.pageError(w, r, err)
		return
	}
	app.render(w, r, http.StatusOK, "activate.html", p)
}

// activationChoices sets, on the activation page p of u, what its holder
// is offered besides a passkey of their own: for an account without a
// password (invited, or signed up with a passkey) a password they choose,
// typed twice; for a passkey signup, that passkey.
func (app *application) activationChoices(r *http.Request, p *page, u *user) error {
	if u.HasPassword() {
		return nil
	}
	p.Form["confirm"] = "yes"
	if !u.invitedAt.IsZero() {
		p.Form["invited"] = "yes"
	}
	keys, err := app.store.passkeys(r.Context(), u.ID)
	if len(keys) > 0 {
		p.Form["passkey"] = "yes"
	}
	return err
}

// handleActivateForm activates the account with the password typed, or,
// for "This wasn't me", deletes the pending signup and its tokens. A
// password that is not the signup's is asked for twice, then becomes the
// account's.
func (app *application) handleActivateForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	switch r.PostForm.Get("action") {
	case "activate":
		password, confirm := r.PostForm.Get("password"), r.PostForm.Get("confirm")
		confirming := r.PostForm.Has("confirm")
		sessionToken, l := app.newLogin(r, "session", app.now())
		l.amr = "pwd"
		// The signup's own password typed once activates, on either step:
		// only a new password needs typing twice.
		_, errs, err := app.activate(r.Context(), token, password, false, l)
		if errors.Is(err, errNotTheSignupPassword) && confirming {
			if confirm != password {
				app.activatePage(w, r, token, true, validator{"confirm": "error.passwords_differ"})
				return
			}
			_, errs, err = app.activate(r.Context(), token, password, true, l)
		}
		switch {
		case errors.Is(err, errNotTheSignupPassword):
			app.activatePage(w, r, token, true, validator{"form": "error.not_signup_password"})
		case err != nil:
			app.pageError(w, r, err)
		case errs["token"] != "":
			app.invalidLink(w, r)
		case len(errs) > 0:
			app.activatePage(w, r, token, confirming, errs)
		default:
			app.startSession(w, sessionToken)
			p := app.continuePage(pageOf("activate.done.title", "activate.done.text"))
			if to := app.returnTo(r.PostForm.Get("return_to")); to != "" {
				p.Link = to // back to the page asked for before signing up
			}
			app.render(w, r, http.StatusOK, "message.html", p)
		}
	case "cancel":
		if err := app.store.cancelSignup(r.Context(), hashToken(token), app.now()); app.linkFailed(w, r, err, app.invalidLink) {
			return
		}
		app.outbox.kickWebhooks() // a change that sends no email
		app.showMessage(w, r, http.StatusOK, "activate.cancelled.title", "activate.cancelled.text")
	default:
		app.showMessage(w, r, http.StatusBadRequest, "badform.title", "badbutton.text")
	}
}

// activatePage renders the activation page again (422) with errs, asking
// for the password twice when confirm is set.
func (app *application) activatePage(w http.ResponseWriter, r *http.Request, token string, confirm bool, errs validator) {
	u, err := app.store.pendingUser(r.Context(), hashToken(token), app.now())
	if app.linkFailed(w, r, err, app.invalidLink) {
		return
	}
	p := page{Title: "activate.title", Name: u.Name, SignedUpAt: u.CreatedAt, Token: token, Errors: errs,
		Form: map[string]string{"return_to": app.returnTo(r.PostForm.Get("return_to"))}}
	if confirm {
		p.Form["confirm"] = "yes"
	}
	if err := app.activationChoices(r, &p, u); err != nil {
		app.pageError(w, r, err)
		return
	}
	app.render(w, r, http.StatusUnprocessableEntity, "activate.html", p)
}

// handleResendPage shows the form for a new activation link.
func (app *application) handleResendPage(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusOK, "resend.html", page{Title: "resend.title", Lines: []string{"resend.text"}})
}

// emailForm handles a posted form that asks for an email to its address,
// as the API does (send), and answers the same page whoever owns the
// address: done (a message whose {{.Email}} is the address), or the form (page name,
// title) again for a malformed one.
func (app *application) emailForm(w http.ResponseWriter, r *http.Request, send func(ctx context.Context, address string) (validator, error), name, title, done string) {
	if !app.readForm(w, r) {
		return
	}
	address := r.PostForm.Get("email")
	errs, err := send(r.Context(), address)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	if len(errs) > 0 {
		app.render(w, r, http.StatusUnprocessableEntity, name, page{Title: title, Form: map[string]string{"email": address}, Errors: errs})
		return
	}
	app.render(w, r, http.StatusOK, "message.html", page{Title: "inbox.title", Lines: []string{done}, Args: map[string]string{"Email": address}})
}

// handleResendForm asks for a new activation link.
func (app *application) handleResendForm(w http.ResponseWriter, r *http.Request) {
	app.emailForm(w, r, app.resendActivation, "resend.html", "resend.title", "resend.done")
}

// handleForgotPage shows the form for a password reset link.
func (app *application) handleForgotPage(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusOK, "forgot-password.html", page{Title: "forgot.title", Lines: []string{"forgot.text"}})
}

// handleForgotForm asks for a password reset link.
func (app *application) handleForgotForm(w http.ResponseWriter, r *http.Request) {
	app.emailForm(w, r, app.requestPasswordReset, "forgot-password.html", "forgot.title", "forgot.done")
}

// handleResetPage shows the form for a new password. It looks the token up
// to say at once if the link is dead, and never uses it: the button does.
func (app *application) handleResetPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	u, err := app.store.userByToken(r.Context(), hashToken(token), "password-reset", app.now())
	if app.linkFailed(w, r, err, app.deadResetLink) {
		return
	}
	// The address, for password managers to know which account it is for.
	app.render(w, r, http.StatusOK, "reset-password.html", page{Title: "reset.title", Token: token, Form: map[string]string{"email": u.Email}})
}

// handleResetForm sets the new password as PUT /v1/users/password does.
func (app *application) handleResetForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	deviceToken, device := app.newDevice()
	errs, skipped, err := app.resetPassword(r.Context(), token, r.PostForm.Get("password"), device)
	switch {
	case err != nil:
		app.pageError(w, r, err)
	case errs["token"] != "":
		app.deadResetLink(w, r)
	case len(errs) > 0:
		app.render(w, r, http.StatusUnprocessableEntity, "reset-password.html", page{Title: "reset.title", Token: token, Errors: errs})
	default:
		http.SetCookie(w, app.cookie(deviceCookie, deviceToken, deviceTTL))
		p := pageOf("reset.done.title", "reset.done.text").withLink("/login", "reset.done.link")
		if skipped {
			p.Lines = append(p.Lines, "notice.skipped")
		}
		app.render(w, r, http.StatusOK, "message.html", p)
	}
}

// deadResetLink says that a reset link does not work, and where to get one.
func (app *application) deadResetLink(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusUnprocessableEntity, "message.html", page{Title: "link.dead.title",
		Lines: []string{"link.dead.reset"}, Link: "/forgot-password", LinkText: "link.dead.reset_link"})
}
