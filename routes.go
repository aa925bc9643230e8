package main

// routes.go lists every route and the middleware every request passes through.

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// routes lists every route: the API, then the pages; and the middleware
// every request passes through, outermost first.
func (app *application) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthcheck", app.handleHealthcheck)
	mux.HandleFunc("POST /v1/users", app.handleSignup)
	mux.HandleFunc("PUT /v1/users/activated", app.handleActivate)
	mux.HandleFunc("POST /v1/tokens/activation", app.handleResendActivation)
	mux.HandleFunc("POST /v1/tokens/authentication", app.handleLogin)
	mux.HandleFunc("DELETE /v1/tokens/authentication", app.requireBearer(app.handleLogout))
	mux.HandleFunc("POST /v1/tokens/two-step", app.handleTwoStepLogin)
	mux.HandleFunc("GET /v1/users/me", app.requireBearer(app.handleMe))
	mux.HandleFunc("POST /v1/tokens/password-reset", app.handleRequestPasswordReset)
	mux.HandleFunc("PUT /v1/users/password", app.handleResetPassword)
	mux.HandleFunc("PUT /v1/users/me/password", app.requireBearer(app.handleChangePassword))
	mux.HandleFunc("POST /v1/users/me/email", app.requireBearer(app.handleRequestEmailChange))
	mux.HandleFunc("PUT /v1/users/email", app.handleConfirmEmailChange)
	mux.HandleFunc("DELETE /v1/users/me", app.requireBearer(app.handleDeleteAccount))
	mux.HandleFunc("GET /v1/users/me/sessions", app.requireBearer(app.handleSessions))
	mux.HandleFunc("DELETE /v1/users/me/sessions/{id}", app.requireBearer(app.handleEndSession))
	mux.HandleFunc("/v1/forward-auth", app.handleForwardAuth) // any method: proxies ask with the original one
	mux.HandleFunc("GET /metrics", app.handleMetrics)

	mux.HandleFunc("GET /{$}", app.handleRoot)
	mux.HandleFunc("GET /signup", app.handleSignupPage)
	mux.HandleFunc("POST /signup", app.handleSignupForm)
	mux.HandleFunc("GET /activate", app.handleActivatePage)
	mux.HandleFunc("POST /activate", app.handleActivateForm)
	mux.HandleFunc("GET /resend", app.handleResendPage)
	mux.HandleFunc("POST /resend", app.handleResendForm)
	mux.HandleFunc("GET /forgot-password", app.handleForgotPage)
	mux.HandleFunc("POST /forgot-password", app.handleForgotForm)
	mux.HandleFunc("GET /reset-password", app.handleResetPage)
	mux.HandleFunc("POST /reset-password", app.handleResetForm)
	mux.HandleFunc("GET /login", app.handleLoginPage)
	mux.HandleFunc("POST /login", app.handleLoginForm)
	mux.HandleFunc("POST /login/code", app.handleLoginCodeForm)
	mux.HandleFunc("POST /login/passkey", app.handlePasskeyLoginBegin)
	mux.HandleFunc("POST /login/passkey/finish", app.handlePasskeyLoginFinish)
	mux.HandleFunc("POST /logout", app.handleLogoutForm)
	mux.HandleFunc("GET /account", app.handleAccountPage)
	mux.HandleFunc("POST /account/password", app.handleAccountPasswordForm)
	mux.HandleFunc("POST /account/email", app.handleAccountEmailForm)
	mux.HandleFunc("POST /account/sessions", app.handleAccountSessionsForm)
	mux.HandleFunc("POST /account/delete", app.handleAccountDeleteForm)
	mux.HandleFunc("POST /account/language", app.handleAccountLanguageForm)
	mux.HandleFunc("POST /account/data", app.handleAccountDataForm)
	mux.HandleFunc("POST /account/two-step", app.handleTwoStepForm)
	mux.HandleFunc("GET /account/two-step/qr.png", app.handleTwoStepQR)
	mux.HandleFunc("POST /account/passkeys/begin", app.handlePasskeyAddBegin)
	mux.HandleFunc("POST /account/passkeys/finish", app.handlePasskeyAddFinish)
	mux.HandleFunc("POST /account/passkeys/remove", app.handlePasskeyRemove)
	mux.HandleFunc("POST /account/passkeys/proof", app.handlePasskeyProofBegin)
	mux.HandleFunc("POST /account/passkeys/proof/finish", app.handlePasskeyProofFinish)
	mux.HandleFunc("POST /signup/passkey", app.handlePasskeySignupBegin)
	mux.HandleFunc("POST /signup/passkey/finish", app.handlePasskeySignupFinish)
	mux.HandleFunc("GET /signup/sent", app.handleSignupSent)
	mux.HandleFunc("POST /activate/passkey", app.handleActivatePasskeyBegin)
	mux.HandleFunc("POST /activate/passkey/finish", app.handleActivatePasskeyFinish)
	mux.HandleFunc("POST /activate/passkey/new", app.handleActivateNewPasskeyBegin)
	mux.HandleFunc("POST /activate/passkey/new/finish", app.handleActivateNewPasskeyFinish)
	mux.HandleFunc("GET /oidc/login", app.handleOIDCLogin)
	mux.HandleFunc("POST /oidc/consent", app.handleConsentForm)
	mux.HandleFunc("POST /account/apps", app.handleAppRevokeForm)
	if app.store != nil {
		provider := app.oidcHandler()
		for _, path := range oidcPaths {
			mux.Handle(path, provider)
		}
	}
	mux.HandleFunc("GET /confirm-email", app.handleConfirmEmailPage)
	mux.HandleFunc("POST /confirm-email", app.handleConfirmEmailForm)
	mux.HandleFunc("GET /undo-email", app.handleUndoEmailPage)
	mux.HandleFunc("POST /undo-email", app.handleUndoEmailForm)
	mux.HandleFunc("GET /static/style.css", app.handleStyle)
	mux.HandleFunc("GET /static/passkeys.js", app.handleScript)
	mux.HandleFunc("GET /favicon.ico", app.handleFavicon)
	return app.recoverPanic(app.countRequests(mux, app.refuseWhenGone(app.rateLimit(app.cors(app.sameOrigin(app.deadline(app.noRoute(mux))))))))
}

// handleHealthcheck reports that the service is up, and its version.
func (app *application) handleHealthcheck(w http.ResponseWriter, r *http.Request) {
	data := envelope{
		"status": "available",
		"system_info": map[string]string{
			"environment": app.cfg.env,
			"version":     version(),
		},
	}
	app.writeJSON(w, r, http.StatusOK, data)
}

// recoverPanic answers 500 to a request whose handler panicked.
func (app *application) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				w.Header().Set("Connection", "close")
				app.serverError(w, r, fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// refuseWhenGone answers 503 to every request once the database file is
// gone, while the service shuts down; and to every request that writes
// (not a GET or HEAD: forward auth and the pages still answer) while the
// disk is low and another process pins the WAL (store.lowDisk).
func (app *application) refuseWhenGone(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case app.store.gone.Load():
			w.Header().Set("Retry-After", "5")
			app.errorResponse(w, r, http.StatusServiceUnavailable, "the service is restarting; try again in a moment")
		case r.Method != http.MethodGet && r.Method != http.MethodHead && app.store.lowDisk():
			app.logger.Warn("request refused: the disk has less room than the reserve, and another process (a Litestream replica, say) keeps the WAL",
				"method", r.Method, "path", r.URL.Path, "error", "disk low")
			w.Header().Set("Retry-After", "5")
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				app.errorResponse(w, r, http.StatusServiceUnavailable, "the service cannot store your request right now; try again in a moment")
			} else {
				app.showMessage(w, r, http.StatusServiceUnavailable, "unavailable.title", "unavailable.text")
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// How long a request's work may take, its database work above all: past
// it the request is answered 503 with Retry-After (classify), so that a
// database that went silent (a network partition) holds no request — and
// no proxy's check on every page of the app — for its length.
const (
	requestTimeout     = 5 * time.Second
	forwardAuthTimeout = 2 * time.Second
)

// deadline gives each request's context its deadline: forwardAuthTimeout
// for a forward-auth check, requestTimeout for the rest.
func (app *application) deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := requestTimeout
		if r.URL.Path == "/v1/forward-auth" {
			d = forwardAuthTimeout
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// cors lets the browsers of -cors-trusted-origins call the API: their
// requests get the CORS headers, and their preflights an answer.
func (app *application) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r) // the provider's routes answer CORS themselves (newProvider)
			return
		}
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !slices.Contains(app.cfg.corsOrigins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses a cross-origin POST, PUT or DELETE from a browser, so
// that no web page can make its visitors sign up, log in or send emails: on
// the API (a JSON 403) unless its origin is in -cors-trusted-origins; on
// the pages (a page) always; on the endpoints an app calls (appCalls)
// unless its origin is a registered app's or trusted. Requests without
// browser headers (curl, servers) pass.
func (app *application) sameOrigin(next http.Handler) http.Handler {
	pages := http.NewCrossOriginProtection() // no origin is trusted to post the forms
	api := http.NewCrossOriginProtection()
	for _, origin := range app.cfg.corsOrigins {
		api.AddTrustedOrigin(origin) // checked with the config
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case slices.Contains(appCalls, r.URL.Path):
			if api.Check(r) != nil && !app.fromClientOrigin(r) {
				app.errorResponse(w, r, http.StatusForbidden, "cross-origin request refused")
				return
			}
		case !strings.HasPrefix(r.URL.Path, "/v1/"):
			if err := pages.Check(r); err != nil {
				app.showMessage(w, r, http.StatusForbidden, "refused.title", "refused.text")
				return
			}
		default:
			if err := api.Check(r); err != nil {
				app.errorResponse(w, r, http.StatusForbidden, "cross-origin request refused")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// appCalls are the OpenID Connect endpoints an app calls itself, with its
// own credentials, code or token and never a cookie: a single-page app (a
// public client) posts to them from its own origin.
var appCalls = []string{"/oauth/token", "/oauth/introspect", "/revoke", "/userinfo"}

// fromClientOrigin reports whether r comes from the origin of a registered
// client's redirect URI — an app's own page.
func (app *application) fromClientOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	origins, err := app.store.clientOrigins(r.Context())
	return err == nil && origin != "" && slices.Contains(origins, origin)
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countRequests counts requests by route pattern (a fixed set, never the
// raw path) and status, and times them.
func (app *application) countRequests(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			app.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
			app.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

// noRoute answers a request that no route takes — 404, or 405 with Allow —
// instead of the ServeMux's plain text: in JSON on the API, as a page in
// the site's style elsewhere (a mistyped page path, /Signup or /signup/,
// is a person's).
func (app *application) noRoute(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		page := !strings.HasPrefix(r.URL.Path, "/v1/")
		switch {
		case probe.status == http.StatusNotFound && page:
			app.render(w, r, http.StatusNotFound, "message.html", pageOf("notfound.title", "notfound.text").withLink("/signup", "notfound.link"))
		case probe.status == http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			app.errorResponse(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("the %s method is not supported for this resource", r.Method))
		case probe.status == http.StatusNotFound:
			app.errorResponse(w, r, http.StatusNotFound, "the requested resource could not be found")
		default: // a redirect to the clean path
			h.ServeHTTP(w, r)
		}
	})
}

// headerProbe records what the ServeMux's own error handler would send.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header { return p.header }

func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }

func (p *headerProbe) WriteHeader(status int) { p.status = status }
