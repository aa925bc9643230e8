package main

// forwardauth.go answers a reverse proxy that asks, on every request to
// the app behind it, who is logged in (nginx auth_request, Caddy
// forward_auth, Traefik ForwardAuth).

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// handleForwardAuth answers 200 with Remote-User (the id), Remote-Email and
// Remote-Name for a live session cookie or bearer token; else 401, or, for
// a trusted proxy that names an original GET of an allowed origin, 302 to
// the login page, which then returns there. It changes nothing, and writes
// at most a session's last use, once a minute.
func (app *application) handleForwardAuth(w http.ResponseWriter, r *http.Request) {
	u, err := app.forwardedUser(r)
	switch {
	case err == nil:
		h := w.Header()
		h["Remote-User"] = []string{strconv.FormatInt(u.ID, 10)} // all three, always: some proxies
		h["Remote-Email"] = []string{u.Email}                    // pass a client's own Remote-*
		h["Remote-Name"] = []string{u.Name}                      // header through when one is missing
		h["Cache-Control"] = []string{"no-store"}
		w.WriteHeader(http.StatusOK)
	case !errors.Is(err, errNotFound):
		app.serverError(w, r, err)
	default:
		if to := app.loginRedirect(r); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.Header().Set("Cache-Control", "no-store")
		app.errorResponse(w, r, http.StatusUnauthorized, "not logged in")
	}
}

// forwardedUser is the user of the request's session cookie, else of its
// bearer token, or errNotFound.
func (app *application) forwardedUser(r *http.Request) (*user, error) {
	u, _, err := app.browserSession(r)
	if !errors.Is(err, errNotFound) {
		return u, err
	}
	hash := bearerHash(r)
	if hash == nil {
		return nil, errNotFound
	}
	u, _, err = app.store.sessionUser(r.Context(), hash, "authentication", app.now())
	return u, err
}

// loginRedirect is where a proxy should send a person who is not logged in:
// the login page, returning to the original request — only when the
// request comes from a trusted proxy that names an original GET (the
// X-Forwarded-Method, -Proto, -Host and -Uri Caddy and Traefik send) whose
// origin return_to may lead to. Else "".
func (app *application) loginRedirect(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !app.trusted(peer.Addr().Unmap()) || r.Header.Get("X-Forwarded-Method") != http.MethodGet {
		return ""
	}
	proto, host, uri := r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Uri")
	if (proto != "http" && proto != "https") || host == "" || !strings.HasPrefix(uri, "/") {
		return ""
	}
	target := app.returnTo(proto + "://" + host + uri)
	if target == "" || !strings.Contains(target, "://") {
		return ""
	}
	return app.cfg.baseURL + "/login?return_to=" + url.QueryEscape(target)
}
