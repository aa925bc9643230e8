package main

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestOIDCTokensEnd: what ends a person's way in ends the tokens apps hold
// for them, at once, on every instance (two sharing PostgreSQL) — each
// token first read by userinfo at both, so that no answer kept from
// before can be given: a password reset by email, the operator's `users
// disable`, the account's deletion. And an app's own revocation (RFC 7009,
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
			a := startBinary(t, args)
			b := a
			if engine == "postgres" {
				b = startBinary(t, args)
			}
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

			password := "pa55word1234"
			grant := func() *oauth2.Token { // a fresh grant, logged in with password when the browser is not
				t.Helper()
				browser := newRPBrowser(t, site, a.url, "http://127.0.0.1:9/")
				pkce := oauth2.GenerateVerifier()
				got := browser.authorize(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(pkce)), "ada@example.com", password)
				tok, err := conf.Exchange(ctxB, got.Get("code"), oauth2.VerifierOption(pkce))
				if err != nil {
					t.Fatal(err)
				}
				for _, ctx := range []context.Context{ctxA, ctxB} {
					if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err != nil {
						t.Fatalf("userinfo with a fresh token: %v", err)
					}
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

			// The person deletes the account.
			tok = grant()
			_, _, bearer := login(t, a.url, "ada@example.com", password)
			if status, body := bearerDo(t, "DELETE", a.url+"/v1/users/me", bearer, map[string]string{"current_password": password}); status != http.StatusNoContent {
				t.Fatalf("delete: %d %v", status, body)
			}
			ended("the account's deletion", tok)
		})
	}
}
