package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestOIDCTokensEnd: what ends a person's way in ends the tokens apps hold
// for them, at once, on every instance (two sharing PostgreSQL) — each
// token first read by userinfo at both, so that no answer kept from
// before can be given: a password reset by email, the operator's `users
// disable`, an address change undone, the account's deletion; userinfo
// says why (RFC 6750's WWW-Authenticate) and introspection (RFC 7662) says
// so too. And an app's own revocation (RFC 7009,
// /revoke) ends what it names: a refresh token its grant, an access token
// its grant too, another app's token nothing.
func TestOIDCTokensEnd(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			const site, redirect = "http://localhost:8443", "http://127.0.0.1:9/callback"
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			args = append(args, "-db", db, "-base-url", site)
			a, b := startInstances(t, engine, args)
			signup(t, a.url, "ada@example.com")
			activate(t, a.url, waitFor1(t, srv, "ada@example.com", "Activate"))
			app := addClient(t, db, "Grafana", "-redirect-uri", redirect)
			other := addClient(t, db, "Gitea", "-redirect-uri", redirect)
			ctxA, ctxB := via(site, a.url), via(site, b.url)
			provider, err := oidc.NewProvider(ctxA, site)
			if err != nil {
				t.Fatal(err)
			}
			conf := oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, Endpoint: provider.Endpoint(), RedirectURL: redirect,
				Scopes: []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess}}
			if res, err := http.Get(a.url + "/userinfo"); err == nil { // no token at all
				res.Body.Close()
				if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("userinfo without a token: %d, WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
				}
			}

			introspect := func(token string) (got struct { // RFC 7662, by the app holding it
				Active   bool   `json:"active"`
				ClientID string `json:"client_id"`
				Email    string `json:"email"`
			}) {
				t.Helper()
				req, _ := http.NewRequest("POST", a.url+"/oauth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(url.QueryEscape(app.ID), url.QueryEscape(app.Secret))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 200 {
					t.Fatalf("introspection: %d %v", res.StatusCode, err)
				}
				return got
			}
			address, password := "ada@example.com", "pa55word1234"
			grant := func() *oauth2.Token { // a fresh grant, logged in as address
				t.Helper()
				browser := newRPBrowser(t, site, a.url, "http://127.0.0.1:9/")
				pkce := oauth2.GenerateVerifier()
				got := browser.authorize(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(pkce)), address, password)
				tok, err := conf.Exchange(ctxB, got.Get("code"), oauth2.VerifierOption(pkce))
				if err != nil {
					t.Fatal(err)
				}
				for _, ctx := range []context.Context{ctxA, ctxB} {
					if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err != nil {
						t.Fatalf("userinfo with a fresh token: %v", err)
					}
				}
				if got := introspect(tok.AccessToken); got.Active != true || got.ClientID != app.ID || got.Email != address {
					t.Errorf("introspection of a fresh token: %+v", got)
				}
				return tok
			}
			ended := func(what string, tok *oauth2.Token) {
				t.Helper()
				for _, ctx := range []context.Context{ctxA, ctxB} {
					if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
						t.Errorf("userinfo after %s", what)
					}
				}
				if _, err := conf.TokenSource(ctxA, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
					t.Errorf("a refresh token after %s", what)
				}
				if got := introspect(tok.AccessToken); got.Active {
					t.Errorf("introspection after %s: %+v", what, got)
				}
				req, _ := http.NewRequest("GET", b.url+"/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
					if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
						t.Errorf("userinfo after %s: %d, WWW-Authenticate %q", what, res.StatusCode, res.Header.Get("WWW-Authenticate"))
					}
				}
			}
			revoke := func(clientID, secret, token, hint string) {
				t.Helper()
				form := url.Values{"token": {token}, "token_type_hint": {hint}, "client_id": {clientID}, "client_secret": {secret}}
				res, err := http.PostForm(b.url+"/revoke", form)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != 200 { // RFC 7009: 200 for a token revoked and for one unknown alike
					t.Fatalf("revoke: %d", res.StatusCode)
				}
			}

			// The app revokes: a refresh token ends its grant, an access
			// token its grant too; another app's revocation ends nothing.
			tok := grant()
			revoke(other.ID, other.Secret, tok.RefreshToken, "refresh_token")
			revoke(other.ID, other.Secret, tok.AccessToken, "access_token")
			if _, err := provider.UserInfo(ctxA, oauth2.StaticTokenSource(tok)); err != nil {
				t.Errorf("userinfo after another app revoked the token: %v", err)
			}
			revoke(app.ID, app.Secret, tok.RefreshToken, "refresh_token")
			ended("the app revoked its refresh token", tok)
			tok = grant()
			revoke(app.ID, app.Secret, tok.AccessToken, "access_token")
			ended("the app revoked its access token", tok)

			// A password reset by email.
			tok = grant()
			n := len(srv.messages())
			if status, _ := post(t, "POST", a.url+"/v1/tokens/password-reset", map[string]string{"email": "ada@example.com"}); status != http.StatusAccepted {
				t.Fatalf("reset request: %d", status)
			}
			reset := srv.waitMessages(t, n+1, 10*time.Second)[n]
			password = "new-pa55word"
			if status, body := post(t, "PUT", b.url+"/v1/users/password", map[string]string{"token": tokenOf(t, reset.data), "password": password}); status != 200 {
				t.Fatalf("reset: %d %v", status, body)
			}
			ended("a password reset", tok)

			// The operator disables the account, beside the running service.
			tok = grant()
			if out, code := runSignup(t, db, "users", "disable", "ada@example.com"); code != 0 {
				t.Fatalf("users disable: %d %s", code, out)
			}
			ended("users disable", tok)
			if out, code := runSignup(t, db, "users", "enable", "ada@example.com"); code != 0 {
				t.Fatalf("users enable: %d %s", code, out)
			}

			// An address change undone from the old address.
			tok = grant()
			_, _, bearer := login(t, a.url, "ada@example.com", password)
			if status, _ := bearerDo(t, "POST", a.url+"/v1/users/me/email", bearer, map[string]string{"email": "thief@evil.example", "current_password": password}); status != http.StatusAccepted {
				t.Fatalf("address change: %d", status)
			}
			for _, to := range []string{"ada@example.com", "thief@evil.example"} {
				if status, _ := post(t, "PUT", a.url+"/v1/users/email", map[string]string{"token": confirmLink(t, waitFor1(t, srv, to, "Confirm the new email address"))}); status != http.StatusOK {
					t.Fatalf("confirm %s: %d", to, status)
				}
			}
			address = "thief@evil.example"
			tok2 := grant() // one given to the new address's holder
			address = "ada@example.com"
			_, undo := linkOf(t, waitFor1(t, srv, "ada@example.com", "has a new email address").data)
			if status, body := form(t, b.url, "/undo-email", url.Values{"token": {undo}}); status != http.StatusOK {
				t.Fatalf("undo: %d\n%s", status, body)
			}
			ended("an address change undone", tok)
			ended("an address change undone", tok2)

			// The person deletes the account.
			tok = grant()
			_, _, bearer = login(t, a.url, "ada@example.com", password)
			if status, body := bearerDo(t, "DELETE", a.url+"/v1/users/me", bearer, map[string]string{"current_password": password}); status != http.StatusNoContent {
				t.Fatalf("delete: %d %v", status, body)
			}
			ended("the account's deletion", tok)
		})
	}
}

// TestOIDCRefreshRefusedKeepsTheGrant: a refresh that fails its checks — a
// scope beyond the grant's, or another app's credentials — uses nothing
// up: the refresh token still refreshes for its own app, once. Two uses
// racing still issue once and revoke the family. No answer of the token
// endpoint or userinfo may be cached.
func TestOIDCRefreshRefusedKeepsTheGrant(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	const site, redirect = "http://localhost:8443", "http://127.0.0.1:9/callback"
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-base-url", site)...))
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))
	db := filepath.Join(dir, "signup.db")
	app := addClient(t, db, "Grafana", "-redirect-uri", redirect)
	other := addClient(t, db, "Gitea", "-redirect-uri", redirect)
	spa := addClient(t, db, "Single-page app", "-redirect-uri", redirect, "-public")
	ctx := via(site, p.url)
	provider, err := oidc.NewProvider(ctx, site)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, Endpoint: provider.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess}}
	browser := newRPBrowser(t, site, p.url, "http://127.0.0.1:9/")
	pkce := oauth2.GenerateVerifier()
	got := browser.authorize(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(pkce)), "ada@example.com", "pa55word1234")
	tok, err := conf.Exchange(ctx, got.Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatal(err)
	}
	refresh := func(form url.Values) int {
		t.Helper()
		form.Set("grant_type", "refresh_token")
		res, err := http.PostForm(p.url+"/oauth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Pragma") != "no-cache" { // RFC 6749 5.1
			t.Errorf("the token endpoint's answer (%d) may be cached: %v", res.StatusCode, res.Header)
		}
		return res.StatusCode
	}
	for what, form := range map[string]url.Values{
		"a scope beyond the grant's": {"refresh_token": {tok.RefreshToken}, "client_id": {app.ID}, "client_secret": {app.Secret}, "scope": {"openid email profile"}},
		"another app's credentials":  {"refresh_token": {tok.RefreshToken}, "client_id": {other.ID}, "client_secret": {other.Secret}},
		"a public app's id":          {"refresh_token": {tok.RefreshToken}, "client_id": {spa.ID}},
	} {
		if status := refresh(form); status != http.StatusBadRequest {
			t.Errorf("a refresh with %s: %d, want 400", what, status)
		}
	}
	refreshed, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("the refresh token after refused refreshes: %v", err)
	}
	req, _ := http.NewRequest("GET", p.url+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+refreshed.AccessToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("userinfo with the refreshed token: %d, Cache-Control %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}

	// Two uses of one refresh token at once: one is issued, and then the
	// family is revoked.
	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			statuses <- refresh(url.Values{"refresh_token": {refreshed.RefreshToken}, "client_id": {app.ID}, "client_secret": {app.Secret}})
		})
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == 200 {
			ok++
		}
	}
	if ok > 1 {
		t.Errorf("one refresh token refreshed %d times at once", ok)
	}
	if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(refreshed)); err == nil {
		t.Errorf("the family of a refresh token used twice still reads userinfo")
	}
}
