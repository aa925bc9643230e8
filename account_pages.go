package main

// account_pages.go is the account page and its forms, and the page of an
// address change's emailed links; account.go has what each change does.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// accountPage renders the account page of u (status, with errs for the
// form section, and notice lines on top).
func (app *application) accountPage(w http.ResponseWriter, r *http.Request, status int, u *user, s *loginSession, section string, errs validator, form map[string]string, args map[string]string, notice ...string) {
	// The account as it is now (a session's user has no password hash,
	// and a change may have just been made): whether it has a password
	// decides what its forms ask for.
	cur, err := app.store.userByID(r.Context(), u.ID)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	u = cur
	list, err := app.store.sessions(r.Context(), u.ID, s.hash, app.now())
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	activity, err := app.store.activity(r.Context(), u.ID, maxActivityShown)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	twoStep, err := app.store.twoStep(r.Context(), u.ID)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	keys, err := app.store.passkeys(r.Context(), u.ID)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	proven, err := app.store.sessionProven(r.Context(), s.hash, app.now())
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	apps, err := app.store.allowedApps(r.Context(), u.ID)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	if form == nil {
		form = map[string]string{}
	}
	form["section"] = section
	var languages []languageLink
	mine := app.templates.localeOf(u).tag
	for _, tag := range app.templates.offered {
		languages = append(languages, languageLink{Tag: tag, Name: app.templates.locales[tag].name, Current: tag == mine})
	}
	app.render(w, r, status, "account.html", page{Title: "account.title", Lines: notice, Account: u, Since: u.CreatedAt,
		Languages: languages, Sessions: list, Activity: activity, TwoStep: twoStep, Passkeys: keys, Proven: proven, Apps: apps, Form: form, Errors: errs, Args: args})
}

// loggedIn returns the user and session of the request's cookie; without
// one it sends the browser to the login page (to come back to path) and
// returns nil.
func (app *application) loggedIn(w http.ResponseWriter, r *http.Request) (*user, *loginSession) {
	u, s, err := app.browserSession(r)
	if errors.Is(err, errNotFound) {
		http.Redirect(w, r, "/login?return_to=%2Faccount", http.StatusSeeOther)
		return nil, nil
	}
	if err != nil {
		app.pageError(w, r, err)
		return nil, nil
	}
	return u, s
}

// handleAccountPage shows the account page, or sends to the login page.
func (app *application) handleAccountPage(w http.ResponseWriter, r *http.Request) {
	u, s := app.loggedIn(w, r)
	if u == nil {
		return
	}
	app.accountPage(w, r, http.StatusOK, u, s, "", nil, nil, nil)
}

// accountForm handles a posted form of the account page: it reads it,
// finds the person, and has do make the change. A change refused is the
// account page again with its messages in section (the throttle's as a
// 429); a change made is answered by done.
func (app *application) accountForm(w http.ResponseWriter, r *http.Request, section string,
	do func(u *user, s *loginSession) (validator, error), done func(u *user, s *loginSession)) {
	if !app.readForm(w, r) {
		return
	}
	u, s := app.loggedIn(w, r)
	if u == nil {
		return
	}
	errs, err := do(u, s)
	var t throttled
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		app.accountPage(w, r, http.StatusTooManyRequests, u, s, section, validator{"form": "error.account_throttled"}, nil,
			map[string]string{"Wait": app.locale(r).inWords(t.retry)})
	case errors.Is(err, errNoticeOverBudget):
		w.Header().Set("Retry-After", "3600")
		app.accountPage(w, r, http.StatusTooManyRequests, u, s, section, validator{"form": "error.notice_over_budget"}, nil, nil)
	case err != nil:
		app.pageError(w, r, err)
	case len(errs) > 0:
		app.accountPage(w, r, http.StatusUnprocessableEntity, u, s, section, errs, map[string]string{"email": r.PostForm.Get("email")}, nil)
	default:
		done(u, s)
	}
}

// handleAccountPasswordForm changes the password from the account page.
func (app *application) handleAccountPasswordForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "password", func(u *user, s *loginSession) (validator, error) {
		return app.changePassword(r, u, s, proofOf(r), r.PostForm.Get("password"))
	}, func(u *user, s *loginSession) {
		app.render(w, r, http.StatusOK, "message.html", app.continuePage(pageOf("reset.done.title", "account.password.done.text")))
	})
}

// handleAccountEmailForm asks for an address change from the account page.
func (app *application) handleAccountEmailForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "email", func(u *user, s *loginSession) (validator, error) {
		return app.requestEmailChange(r, u, proofOf(r), r.PostForm.Get("email"))
	}, func(u *user, s *loginSession) {
		p := pageOf("account.email.done.title", "account.email.done.text", "account.email.done.until").withLink("/account", "account.back")
		p.Args = map[string]string{"Old": u.Email, "New": r.PostForm.Get("email")}
		app.render(w, r, http.StatusOK, "message.html", p)
	})
}

// handleAccountSessionsForm ends one session (id) or every other one.
func (app *application) handleAccountSessionsForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "sessions", func(u *user, s *loginSession) (validator, error) {
		if id := r.PostForm.Get("id"); id != "" {
			if err := app.store.endSession(r.Context(), u.ID, id, app.now()); err != nil && !errors.Is(err, errNotFound) {
				return nil, err
			}
			return nil, nil
		}
		return nil, app.store.endOtherSessions(r.Context(), u.ID, s.hash, app.now())
	}, func(u *user, s *loginSession) {
		if id := r.PostForm.Get("id"); id == s.ID {
			http.SetCookie(w, app.sessionCookie("", -1)) // it ended its own
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		app.accountPage(w, r, http.StatusOK, u, s, "sessions", nil, nil, nil, "account.sessions.ended")
	})
}

// handleAccountLanguageForm sets the language of the account's emails,
// and of this browser's pages (its cookie), as the switch does.
func (app *application) handleAccountLanguageForm(w http.ResponseWriter, r *http.Request) {
	var tag string
	app.accountForm(w, r, "language", func(u *user, s *loginSession) (validator, error) {
		tag = r.PostForm.Get("language")
		if !slices.Contains(app.templates.offered, tag) {
			return validator{"language": "error.language_unknown"}, nil
		}
		return nil, app.store.setLanguage(r.Context(), u.ID, tag)
	}, func(u *user, s *loginSession) {
		u.language = tag
		// The page in the language chosen, and the cookie that keeps it,
		// as a switch link (?lang=) gives them.
		chosen := r.Clone(r.Context())
		chosen.URL.RawQuery = url.Values{"lang": {tag}}.Encode()
		app.accountPage(w, chosen, http.StatusOK, u, s, "language", nil, nil,
			map[string]string{"Language": app.templates.locales[tag].name}, "account.language.done")
	})
}

// handleAccountDeleteForm deletes the account from the account page.
func (app *application) handleAccountDeleteForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "delete", func(u *user, s *loginSession) (validator, error) {
		return app.deleteAccount(r, u, proofOf(r))
	}, func(u *user, s *loginSession) {
		http.SetCookie(w, app.sessionCookie("", -1))
		p := pageOf("account.delete.done.title", "account.delete.done.text").withLink("/signup", "account.delete.done.link")
		p.Args = map[string]string{"Email": u.Email}
		app.render(w, r, http.StatusOK, "message.html", p)
	})
}

// handleAccountDataForm is "Download my data": after the current password,
// a JSON file of everything stored about the person (store.personalData),
// never a hash or a secret.
func (app *application) handleAccountDataForm(w http.ResponseWriter, r *http.Request) {
	app.accountForm(w, r, "data", func(u *user, s *loginSession) (validator, error) {
		if _, err := app.checkPassword(r, u, proofOf(r)); err != nil {
			return passwordProblem(err, "current_password")
		}
		return nil, nil
	}, func(u *user, s *loginSession) {
		data, err := app.store.personalData(r.Context(), u.ID)
		if err != nil {
			app.pageError(w, r, err)
			return
		}
		js, err := json.MarshalIndent(envelope{"exported_at": app.now().UTC().Format(time.RFC3339), "service": app.cfg.appName, "data": data}, "", "\t")
		if err != nil {
			app.pageError(w, r, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Disposition", `attachment; filename="my-data.json"`)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(append(js, '\n'))
	})
}

// handleConfirmEmailPage shows what change a link confirms, with its
// buttons. It never uses the token: mail scanners fetch every link.
func (app *application) handleConfirmEmailPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	c, err := app.store.emailChangeByToken(r.Context(), hashToken(token), app.now())
	if app.linkFailed(w, r, err, app.deadChangeLink) {
		return
	}
	app.render(w, r, http.StatusOK, "confirm-email.html", page{Title: "confirm.title", Token: token,
		Form: map[string]string{"old": c.oldEmail, "new": c.newEmail, "confirmed": strconv.FormatBool(c.confirmed)}})
}

// handleConfirmEmailForm confirms this address's half of the change, or
// cancels the change for both.
func (app *application) handleConfirmEmailForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	switch r.PostForm.Get("action") {
	case "confirm":
		done, skipped, errs, err := app.confirmEmailChange(r.Context(), token)
		switch {
		case err != nil:
			app.pageError(w, r, err)
		case errs["token"] == invalidChangeToken:
			app.deadChangeLink(w, r)
		case len(errs) > 0:
			app.showMessage(w, r, http.StatusUnprocessableEntity, "confirm.taken.title", "confirm.taken.text")
		case done:
			p := pageOf("confirm.done.title", "confirm.done.text").withLink("/account", "loggedin.account")
			if skipped {
				p.Lines = append(p.Lines, "notice.skipped")
			}
			app.render(w, r, http.StatusOK, "message.html", p)
		default:
			app.render(w, r, http.StatusOK, "message.html", pageOf("confirm.half.title", "confirm.half.text").withLink("/account", "loggedin.account"))
		}
	case "cancel":
		if err := app.store.cancelEmailChange(r.Context(), hashToken(token), app.now()); app.linkFailed(w, r, err, app.deadChangeLink) {
			return
		}
		app.render(w, r, http.StatusOK, "message.html", pageOf("confirm.cancelled.title", "confirm.cancelled.text").withLink("/account", "loggedin.account"))
	default:
		app.showMessage(w, r, http.StatusBadRequest, "badform.title", "badbutton.text")
	}
}

// handleUndoEmailPage shows, to the old address of a change made, what
// its link gives back, with its button. It never uses the token: mail
// scanners fetch every link.
func (app *application) handleUndoEmailPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	u, old, err := app.store.emailUndoByToken(r.Context(), hashToken(token), app.now())
	if app.linkFailed(w, r, err, app.deadUndoLink) {
		return
	}
	app.render(w, r, http.StatusOK, "undo-email.html", page{Title: "undo.title", Token: token,
		Form: map[string]string{"old": old, "new": u.Email}})
}

// handleUndoEmailForm gives the account its old address back, ending
// every session of it, and leads on to a password reset from that address.
func (app *application) handleUndoEmailForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	old, err := app.store.undoEmailChange(r.Context(), hashToken(r.PostForm.Get("token")), app.now())
	switch {
	case errors.Is(err, errAddressTaken):
		app.showMessage(w, r, http.StatusUnprocessableEntity, "confirm.taken.title", "confirm.taken.text")
		return
	case app.linkFailed(w, r, err, app.deadUndoLink):
		return
	}
	app.logger.Info("email change undone by the old address's link")
	app.outbox.kickWebhooks() // a change that sends no email
	p := pageOf("undo.done.title", "undo.done.text").withLink("/forgot-password", "undo.done.link")
	p.Args = map[string]string{"Email": old}
	app.render(w, r, http.StatusOK, "message.html", p)
}

// deadUndoLink says that the link of an "email changed" email does not
// work.
func (app *application) deadUndoLink(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusUnprocessableEntity, "message.html", pageOf("link.dead.title", "link.dead.undo").withLink("/forgot-password", "undo.done.link"))
}

// deadChangeLink says that an address change's link does not work.
func (app *application) deadChangeLink(w http.ResponseWriter, r *http.Request) {
	app.render(w, r, http.StatusUnprocessableEntity, "message.html", pageOf("link.dead.title", "link.dead.change").withLink("/account", "loggedin.account"))
}

// agent is a session's browser and system in the words a person uses for
// them; Browser alone for what is not a browser (an API client's name).
type agent struct{ Browser, System string }

// Agent is s's user agent in words: a few lines of reading the User-Agent
// header, in the order that matters (Edge and Opera also say Chrome,
// Chrome also says Safari).
func (s loginSession) Agent() agent { return agentOf(s.UserAgent) }

// Agent is the browser and system of the entry's user agent, in words.
func (e activityEntry) Agent() agent { return agentOf(e.UserAgent) }

// agentOf is the browser and system of user agent ua, in words.
func agentOf(ua string) agent {
	var a agent
	for _, b := range []struct{ mark, name string }{{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"},
		{"Chromium/", "Chromium"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"}} {
		if strings.Contains(ua, b.mark) {
			a.Browser = b.name
			break
		}
	}
	for _, o := range []struct{ mark, name string }{{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iOS"}, {"Windows", "Windows"},
		{"Macintosh", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"}} {
		if strings.Contains(ua, o.mark) {
			a.System = o.name
			break
		}
	}
	if a.Browser == "" { // curl/8.0.1, a script's own name: its first word
		a.Browser, _, _ = strings.Cut(ua, "/")
		a.Browser, _, _ = strings.Cut(a.Browser, " ")
		a.System = ""
	}
	return a
}
