package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// runSignup runs the built binary with -db db and args (a subcommand),
// and returns its output and exit code.
func runSignup(t testing.TB, db string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(builtBinary(t), append([]string{"-db", db}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// testClient is what `signup clients add -json` prints.
type testClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// addClient registers a client with `signup clients add … -json`.
func addClient(t testing.TB, db string, args ...string) testClient {
	t.Helper()
	out, code := runSignup(t, db, append([]string{"clients", "add"}, append(args, "-json")...)...)
	var c testClient
	if err := json.Unmarshal([]byte(out), &c); code != 0 || err != nil {
		t.Fatalf("clients add: exit %d %v\n%s", code, err, out)
	}
	return c
}

// toInstance sends the requests for the site (every instance's
// -base-url, the issuer) to one instance, as a load balancer would.
type toInstance struct{ site, instance *url.URL }

func (r toInstance) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != r.site.Host {
		return http.DefaultTransport.RoundTrip(req)
	}
	sent := req.Clone(req.Context())
	sent.URL.Scheme, sent.URL.Host = r.instance.Scheme, r.instance.Host
	res, err := http.DefaultTransport.RoundTrip(sent)
	if res != nil {
		res.Request = req // the browser saw the site, and keeps its cookies for it
	}
	return res, err
}

// via is a context whose HTTP client (for go-oidc and oauth2) reaches the
// site at instance.
func via(site, instance string) context.Context {
	s, _ := url.Parse(site)
	i, _ := url.Parse(instance)
	return oidc.ClientContext(context.Background(), &http.Client{Transport: toInstance{s, i}})
}

// rpBrowser is a person's browser between an app and signup: it follows
// redirects, logs in when signup's login page shows, and stops at the
// app's redirect URI.
type rpBrowser struct {
	t        testing.TB
	client   *http.Client
	logins   int // how many times it met the login page
	consents int // … and the consent page
}

func newRPBrowser(t testing.TB, site, instance, redirect string) *rpBrowser {
	s, _ := url.Parse(site)
	i, _ := url.Parse(instance)
	jar, _ := cookiejar.New(nil)
	b := &rpBrowser{t: t}
	b.client = &http.Client{Jar: jar, Transport: toInstance{s, i}, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) || strings.HasPrefix(req.URL.String(), "https://evil.example") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

// authorize opens the app's authorization URL and answers what signup asks
// (the login with password, the consent with allow) until signup sends it
// back to the app; it returns the query the app gets.
func (b *rpBrowser) authorize(authURL, address, password string) url.Values {
	b.t.Helper()
	res, err := b.client.Get(authURL)
	for range 5 {
		if err != nil {
			b.t.Fatal(err)
		}
		res.Body.Close()
		if loc := res.Header.Get("Location"); loc != "" && res.StatusCode/100 == 3 {
			u, _ := url.Parse(loc)
			return u.Query()
		}
		page := res.Request.URL
		switch {
		case res.StatusCode == 200 && page.Path == "/login":
			b.logins++
			res, err = b.client.PostForm(page.Scheme+"://"+page.Host+"/login", url.Values{"email": {address}, "password": {password},
				"return_to": {page.Query().Get("return_to")}})
		case res.StatusCode == 200 && page.Path == "/oidc/login": // the consent page
			b.consents++
			res, err = b.client.PostForm(page.Scheme+"://"+page.Host+"/oidc/consent", url.Values{"id": {page.Query().Get("id")}, "action": {"allow"}})
		default:
			b.t.Fatalf("authorize: %d at %s", res.StatusCode, page)
		}
	}
	b.t.Fatal("authorize: no way back to the app")
	return nil
}

// TestOIDCWithGoOIDC: coreos/go-oidc and golang.org/x/oauth2 — a relying
// party nobody here wrote — sign a person in through signup, on both
// engines (two instances sharing PostgreSQL: discovery, the login and the
// code at one, the exchange at the other): discovery and the JWKS, the
// authorization code flow with PKCE, the ID token's claims (sub as
// Remote-User, email_verified, locale, nonce, amr), userinfo, single sign-
// on (a second app needs no second login), refresh tokens rotated (one
// used twice revokes its family), a code used twice failing and revoking
// what it issued, consent asked once for a -consent client, prompt=none,
// an unknown client and an unregistered redirect URI (an error page, no
// redirect), a logout ending the apps' tokens, and `keys rotate`.
func TestOIDCWithGoOIDC(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			const site = "http://localhost:8443" // the issuer: every instance's -base-url
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			args = append(args, "-db", db, "-base-url", site)
			a, b := startInstances(t, engine, args)
			signup(t, a.url, "ada@example.com")
			activate(t, a.url, waitFor1(t, srv, "ada@example.com", "Activate"))
			const redirect = "http://127.0.0.1:9/callback"
			grafana := addClient(t, db, "Grafana", "-redirect-uri", redirect)
			if grafana.Secret == "" || len(grafana.Secret) < 64 {
				t.Fatalf("a confidential client's secret: %q", grafana.Secret)
			}

			ctxA, ctxB := via(site, a.url), via(site, b.url)
			provider, err := oidc.NewProvider(ctxA, site)
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			var discovered struct {
				Algs          []string `json:"id_token_signing_alg_values_supported"`
				Methods       []string `json:"code_challenge_methods_supported"`
				Scopes        []string `json:"scopes_supported"`
				ResponseTypes []string `json:"response_types_supported"`
				GrantTypes    []string `json:"grant_types_supported"`
				Device        string   `json:"device_authorization_endpoint"`
				EndSession    string   `json:"end_session_endpoint"`
			}
			provider.Claims(&discovered)
			if !slices.Contains(discovered.Algs, "RS256") || !slices.Contains(discovered.Methods, "S256") || !slices.Contains(discovered.Scopes, "offline_access") ||
				!slices.Equal(discovered.ResponseTypes, []string{"code"}) || !slices.Equal(discovered.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
				discovered.Device != "" || discovered.EndSession != site+"/end_session" {
				t.Errorf("discovery: %+v", discovered)
			}
			conf := oauth2.Config{ClientID: grafana.ID, ClientSecret: grafana.Secret, Endpoint: provider.Endpoint(), RedirectURL: redirect,
				Scopes: []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}}
			verifier := provider.Verifier(&oidc.Config{ClientID: grafana.ID})

			browser := newRPBrowser(t, site, a.url, "http://127.0.0.1:9/")
			pkce := oauth2.GenerateVerifier()
			got := browser.authorize(conf.AuthCodeURL("state-1", oidc.Nonce("nonce-1"), oauth2.S256ChallengeOption(pkce)), "ada@example.com", "pa55word1234")
			if got.Get("state") != "state-1" || got.Get("code") == "" || browser.logins != 1 {
				t.Fatalf("back at the app: %v after %d logins", got, browser.logins)
			}
			code := got.Get("code")
			tok, err := conf.Exchange(ctxB, code, oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatalf("the code exchanged at the other instance: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idToken, err := verifier.Verify(ctxB, raw)
			if err != nil {
				t.Fatalf("the ID token: %v", err)
			}
			var claims struct {
				Email         string   `json:"email"`
				EmailVerified bool     `json:"email_verified"`
				Name          string   `json:"name"`
				Locale        string   `json:"locale"`
				Nonce         string   `json:"nonce"`
				AMR           []string `json:"amr"`
				AuthTime      int64    `json:"auth_time"`
			}
			if err := idToken.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			u := findUser(t, db, "ada@example.com")
			if idToken.Subject != fmt.Sprint(u.ID) || claims.Email != "ada@example.com" || !claims.EmailVerified || claims.Name != "Test User" ||
				claims.Locale != "en" || claims.Nonce != "nonce-1" || !slices.Equal(claims.AMR, []string{"pwd"}) || claims.AuthTime == 0 {
				t.Errorf("the ID token's claims: sub %s, %+v", idToken.Subject, claims)
			}
			if tok.RefreshToken == "" || tok.Expiry.IsZero() {
				t.Errorf("tokens: refresh %q, expiry %v", tok.RefreshToken, tok.Expiry)
			}
			info, err := provider.UserInfo(ctxA, oauth2.StaticTokenSource(tok))
			if err != nil || info.Email != "ada@example.com" || info.Subject != idToken.Subject {
				t.Fatalf("userinfo: %+v %v", info, err)
			}

			// The code again: refused, and what it issued is revoked.
			if _, err := conf.Exchange(ctxA, code, oauth2.VerifierOption(pkce)); err == nil {
				t.Errorf("a code exchanged twice")
			}
			if _, err := provider.UserInfo(ctxB, oauth2.StaticTokenSource(tok)); err == nil {
				t.Errorf("userinfo with a token from a code used twice")
			}

			// Single sign-on: a second app, no second login.
			gitea := addClient(t, db, "Gitea", "-redirect-uri", redirect, "-consent")
			second := conf
			second.ClientID, second.ClientSecret = gitea.ID, gitea.Secret
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(second.AuthCodeURL("state-2", oauth2.S256ChallengeOption(pkce)), "ada@example.com", "pa55word1234")
			if got.Get("code") == "" || browser.logins != 1 || browser.consents != 1 {
				t.Fatalf("a second app: %v after %d logins, %d consents", got, browser.logins, browser.consents)
			}
			tok, err = second.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			// Consent is remembered.
			got = browser.authorize(second.AuthCodeURL("state-3", oauth2.S256ChallengeOption(pkce)), "", "")
			if got.Get("code") == "" || browser.consents != 1 {
				t.Errorf("consent asked again: %v, %d consents", got, browser.consents)
			}
			// … unless the app asks for it again (prompt=consent); a
			// first-party app (no -consent) is never asked.
			got = browser.authorize(second.AuthCodeURL("state-3", oauth2.SetAuthURLParam("prompt", "consent"), oauth2.S256ChallengeOption(pkce)), "", "")
			if got.Get("code") == "" || browser.consents != 2 {
				t.Errorf("prompt=consent: %v, %d consents, want 2", got, browser.consents)
			}
			got = browser.authorize(conf.AuthCodeURL("state-3", oauth2.SetAuthURLParam("prompt", "consent"), oauth2.S256ChallengeOption(pkce)), "", "")
			if got.Get("code") == "" || browser.consents != 2 {
				t.Errorf("prompt=consent for a first-party app: %v, %d consents, want 2", got, browser.consents)
			}

			// prompt=login and max_age=0 ask for the password again.
			for i, param := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
				logins := browser.logins
				got = browser.authorize(conf.AuthCodeURL("state-again", param, oauth2.S256ChallengeOption(pkce)), "ada@example.com", "pa55word1234")
				if got.Get("code") == "" || browser.logins != logins+1 {
					t.Errorf("a fresh login asked for (%d): %v after %d logins, want %d", i, got, browser.logins, logins+1)
				}
			}

			// The operator sees the app allowed.
			if out, code := runSignup(t, db, "users", "show", "ada@example.com"); code != 0 || !strings.Contains(out, gitea.ID+", allowed") {
				t.Errorf("users show: the app allowed missing: %d\n%s", code, out)
			}

			// Refresh tokens rotate; one used twice revokes its family.
			refreshed, err := second.TokenSource(ctxB, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if err != nil || refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
				t.Fatalf("refreshed: %v", err)
			}
			if _, err := second.TokenSource(ctxA, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
				t.Errorf("a refresh token used twice")
			}
			if _, err := second.TokenSource(ctxA, &oauth2.Token{RefreshToken: refreshed.RefreshToken}).Token(); err == nil {
				t.Errorf("the family of a refresh token used twice still refreshes")
			}
			if _, err := provider.UserInfo(ctxA, oauth2.StaticTokenSource(refreshed)); err == nil {
				t.Errorf("the family of a refresh token used twice still reads userinfo")
			}

			// An app revoked on the account page: its tokens end.
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(second.AuthCodeURL("state-r", oauth2.S256ChallengeOption(pkce)), "", "")
			tok, err = second.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			if res, err := browser.client.PostForm(site+"/account/apps", url.Values{"client_id": {gitea.ID}}); err != nil || res.StatusCode != 200 {
				t.Fatalf("revoking the app: %v %v", res, err)
			} else {
				res.Body.Close()
			}
			if _, err := provider.UserInfo(ctxB, oauth2.StaticTokenSource(tok)); err == nil {
				t.Errorf("userinfo of a revoked app")
			}
			if _, err := second.TokenSource(ctxB, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
				t.Errorf("a refresh token of a revoked app")
			}
			consents := browser.consents
			got = browser.authorize(second.AuthCodeURL("state-r2", oauth2.S256ChallengeOption(pkce)), "", "")
			if got.Get("code") == "" || browser.consents != consents+1 {
				t.Errorf("a revoked app did not ask again: %d consents", browser.consents)
			}

			// A public client: no secret, PKCE required.
			spa := addClient(t, db, "Single-page app", "-redirect-uri", redirect, "-public")
			if spa.Secret != "" {
				t.Errorf("a public client got a secret")
			}
			public := oauth2.Config{ClientID: spa.ID, Endpoint: provider.Endpoint(), RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email"}}
			public.Endpoint.AuthStyle = oauth2.AuthStyleInParams
			got = browser.authorize(public.AuthCodeURL("state-p1"), "", "")
			if _, err := public.Exchange(ctxB, got.Get("code")); err == nil {
				t.Errorf("a public client's code exchanged without PKCE")
			}
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(public.AuthCodeURL("state-p2", oauth2.S256ChallengeOption(pkce)), "", "")
			if ptok, err := public.Exchange(ctxB, got.Get("code"), oauth2.VerifierOption(pkce)); err != nil || ptok.Extra("id_token") == nil {
				t.Errorf("a public client with PKCE: %v", err)
			}
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(public.AuthCodeURL("state-p3", oauth2.S256ChallengeOption(pkce)), "", "")
			if _, err := public.Exchange(ctxB, got.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
				t.Errorf("a public client with the wrong PKCE verifier")
			}

			// prompt=none without a session: login_required, no page.
			stranger := newRPBrowser(t, site, a.url, redirect)
			got = stranger.authorize(conf.AuthCodeURL("state-4", oauth2.SetAuthURLParam("prompt", "none"), oauth2.S256ChallengeOption(pkce)), "", "")
			if got.Get("error") != "login_required" || got.Get("state") != "state-4" || stranger.logins != 0 {
				t.Errorf("prompt=none without a session: %v", got)
			}

			// An unknown client, an unregistered redirect URI: an error page.
			for what, authURL := range map[string]string{
				"an unknown client":            strings.Replace(conf.AuthCodeURL("s"), grafana.ID, "no-such-client", 1),
				"an unregistered redirect URI": strings.Replace(conf.AuthCodeURL("s"), url.QueryEscape(redirect), url.QueryEscape("https://evil.example/cb"), 1),
				"a redirect URI that differs":  strings.Replace(conf.AuthCodeURL("s"), url.QueryEscape(redirect), url.QueryEscape(redirect+"/"), 1),
			} {
				res, err := stranger.client.Get(authURL)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if loc := res.Header.Get("Location"); res.StatusCode/100 == 3 || loc != "" {
					t.Errorf("%s: %d, Location %q; want an error page", what, res.StatusCode, loc)
				}
			}

			// A logout ends the apps' tokens at once, on every instance.
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(conf.AuthCodeURL("state-5", oauth2.S256ChallengeOption(pkce)), "", "")
			tok, err = conf.Exchange(ctxB, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			res, err := browser.client.PostForm(site+"/logout", nil)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			for _, ctx := range []context.Context{ctxA, ctxB} {
				if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
					t.Errorf("userinfo after the logout")
				}
			}
			if _, err := conf.TokenSource(ctxA, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
				t.Errorf("a refresh token after the logout")
			}

			// keys rotate: a new key signs; the old one stays published.
			if out, code := runSignup(t, db, "keys", "rotate"); code != 0 {
				t.Fatalf("keys rotate: %d\n%s", code, out)
			}
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(conf.AuthCodeURL("state-6", oauth2.S256ChallengeOption(pkce)), "ada@example.com", "pa55word1234")
			tok2, err := conf.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			newer, _ := tok2.Extra("id_token").(string)
			if kid(t, newer) == kid(t, raw) {
				t.Errorf("after keys rotate, the same key signs")
			}
			fresh := oidc.NewVerifier(site, oidc.NewRemoteKeySet(ctxB, site+"/keys"), &oidc.Config{ClientID: grafana.ID})
			for _, token := range []string{raw, newer} {
				if _, err := fresh.Verify(ctxB, token); err != nil {
					t.Errorf("an ID token after keys rotate: %v", err)
				}
			}

			// The metrics count by client and result; no code, token or
			// secret reaches a log line.
			m := series(t, scrapeFrom(t, a.url, "127.0.0.1"))
			if m[`signup_oidc_tokens_total{client="`+grafana.ID+`",result="issued"}`] == 0 || m[`signup_oidc_authorizations_total{client="`+grafana.ID+`",result="code"}`] == 0 ||
				m[`signup_oidc_tokens_total{client="",result="code_reused"}`] == 0 {
				t.Errorf("the OpenID Connect metrics: %v", m)
			}
			for _, secret := range []string{code, tok.AccessToken, tok.RefreshToken, tok2.AccessToken, grafana.Secret, gitea.Secret} {
				for _, p := range []*process{a, b} {
					if strings.Contains(p.logs.String(), secret) {
						t.Errorf("a code, token or secret in the log: %q", secret)
					}
				}
			}

			// An app removed by the operator: its tokens end at once.
			if _, err := provider.UserInfo(ctxA, oauth2.StaticTokenSource(tok2)); err != nil {
				t.Fatalf("userinfo before the app's removal: %v", err)
			}
			if out, code := runSignup(t, db, "clients", "remove", grafana.ID); code != 0 {
				t.Fatalf("clients remove: %d\n%s", code, out)
			}
			for _, ctx := range []context.Context{ctxA, ctxB} {
				if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok2)); err == nil {
					t.Errorf("userinfo after the app's removal")
				}
			}
			if out, code := runSignup(t, db, "clients", "list"); code != 0 || strings.Contains(out, grafana.ID) || !strings.Contains(out, gitea.ID) {
				t.Errorf("clients list after a removal: %d\n%s", code, out)
			}

			// A passkey login: the ID token's amr says so.
			st, err := openStore(db)
			if err != nil {
				t.Fatal(err)
			}
			st.composer = cliComposer(config{})
			key := newSoftAuthenticator(t, u.ID)
			if err := st.addPasskey(context.Background(), u, key.passkey(t, "Laptop"), time.Now()); err != nil {
				t.Fatal(err)
			}
			st.close()
			holder := newRPBrowser(t, site, b.url, "http://127.0.0.1:9/")
			pkce = oauth2.GenerateVerifier()
			res, err = holder.client.Get(second.AuthCodeURL("state-k", oidc.Nonce("nonce-k"), oauth2.S256ChallengeOption(pkce)))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			returnTo := res.Request.URL.Query().Get("return_to")
			var begun struct {
				Ceremony string
				Options  struct{ PublicKey struct{ Challenge string } }
			}
			res, err = holder.client.Post(site+"/login/passkey", "application/json", strings.NewReader("{}"))
			if err == nil {
				err = json.NewDecoder(res.Body).Decode(&begun)
				res.Body.Close()
			}
			challenge, _ := base64.RawURLEncoding.DecodeString(begun.Options.PublicKey.Challenge)
			if err != nil || len(challenge) == 0 {
				t.Fatalf("a passkey login begun: %v", err)
			}
			finish, _ := json.Marshal(passkeyFinish{Ceremony: begun.Ceremony, Credential: key.assert(t, challenge, site), ReturnTo: returnTo})
			res, err = holder.client.Post(site+"/login/passkey/finish", "application/json", strings.NewReader(string(finish)))
			var done struct{ Next string }
			if err == nil {
				err = json.NewDecoder(res.Body).Decode(&done)
				res.Body.Close()
			}
			if err != nil || done.Next != returnTo {
				t.Fatalf("logged in with a passkey: next %q, %v", done.Next, err)
			}
			got = holder.authorize(site+done.Next, "", "")
			ktok, err := second.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			kraw, _ := ktok.Extra("id_token").(string)
			kidToken, err := provider.Verifier(&oidc.Config{ClientID: gitea.ID}).Verify(ctxA, kraw)
			if err != nil {
				t.Fatal(err)
			}
			var kclaims struct{ AMR []string }
			kidToken.Claims(&kclaims)
			if !slices.Equal(kclaims.AMR, []string{"hwk", "mfa"}) {
				t.Errorf("a passkey login's amr: %v, want [hwk mfa]", kclaims.AMR)
			}

			// RP-initiated logout ends the signup session, and goes back
			// to the registered URI only.
			const bye = "http://127.0.0.1:9/bye"
			outline := addClient(t, db, "Outline", "-redirect-uri", redirect, "-post-logout-redirect-uri", bye)
			third := conf
			third.ClientID, third.ClientSecret = outline.ID, outline.Secret
			pkce = oauth2.GenerateVerifier()
			got = browser.authorize(third.AuthCodeURL("state-7", oauth2.S256ChallengeOption(pkce)), "", "")
			tok3, err := third.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			hint, _ := tok3.Extra("id_token").(string)
			endSession := func(to string) *http.Response {
				t.Helper()
				res, err := browser.client.Get(site + "/end_session?" + url.Values{"id_token_hint": {hint}, "client_id": {outline.ID},
					"post_logout_redirect_uri": {to}, "state": {"bye-1"}}.Encode())
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res
			}
			if res := endSession("https://evil.example/"); strings.HasPrefix(res.Header.Get("Location"), "https://evil.example") {
				t.Errorf("RP-initiated logout to an unregistered URI: %d %s", res.StatusCode, res.Header.Get("Location"))
			}
			if res := endSession(bye); !strings.HasPrefix(res.Header.Get("Location"), bye) {
				t.Errorf("RP-initiated logout: %d, Location %q, want %s", res.StatusCode, res.Header.Get("Location"), bye)
			}
			res, err = browser.client.Get(site + "/account")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.Request.URL.Path != "/login" {
				t.Errorf("after RP-initiated logout, /account led to %s", res.Request.URL)
			}
			// Without id_token_hint, a GET only asks ("Log out?"); the
			// page's post, from signup's own origin, logs out.
			browser.authorize(third.AuthCodeURL("state-8", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "ada@example.com", "pa55word1234")
			ask := url.Values{"client_id": {outline.ID}, "post_logout_redirect_uri": {bye}, "state": {"bye-2"}}
			res, err = browser.client.Get(site + "/end_session?" + ask.Encode())
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(page), "Log out?") || !strings.Contains(string(page), `name="post_logout_redirect_uri" value="`+bye+`"`) {
				t.Errorf("a logout request without id_token_hint: %d\n%s", res.StatusCode, page)
			}
			if res, err = browser.client.Get(site + "/account"); err == nil {
				res.Body.Close()
				if res.Request.URL.Path != "/account" {
					t.Errorf("a GET to /end_session without id_token_hint logged out: /account led to %s", res.Request.URL)
				}
			}
			res, err = browser.client.PostForm(site+"/end_session", ask)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if !strings.HasPrefix(res.Header.Get("Location"), bye) {
				t.Errorf("the logout page's post: %d, Location %q, want %s", res.StatusCode, res.Header.Get("Location"), bye)
			}
			if res, err = browser.client.Get(site + "/account"); err == nil {
				res.Body.Close()
				if res.Request.URL.Path != "/login" {
					t.Errorf("after the logout page's post, /account led to %s", res.Request.URL)
				}
			}

			// A new password ends the apps' tokens too, on every instance.
			pkce = oauth2.GenerateVerifier()
			got = holder.authorize(second.AuthCodeURL("state-pw", oauth2.S256ChallengeOption(pkce)), "", "")
			ptok, err := second.Exchange(ctxA, got.Get("code"), oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatal(err)
			}
			_, _, bearer := login(t, b.url, "ada@example.com", "pa55word1234")
			if status, body := bearerDo(t, "PUT", a.url+"/v1/users/me/password", bearer, map[string]string{"current_password": "pa55word1234", "password": "new-pa55word"}); status != 200 {
				t.Fatalf("a new password: %d %v", status, body)
			}
			for _, ctx := range []context.Context{ctxA, ctxB} {
				if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(ptok)); err == nil {
					t.Errorf("userinfo after a new password")
				}
			}
			if _, err := second.TokenSource(ctxB, &oauth2.Token{RefreshToken: ptok.RefreshToken}).Token(); err == nil {
				t.Errorf("a refresh token after a new password")
			}
		})
	}
}

// kid is the key id in a JWT's header.
func kid(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	var h struct{ Kid string }
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// findUser reads the account of address from db.
func findUser(t testing.TB, db, address string) *user {
	t.Helper()
	st, err := openStore(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	u, err := st.findUser(context.Background(), address)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// oauth2ProxySetup is signup (its -base-url site, the issuer), an
// account (ada@example.com, pa55word1234), a small app that shows the
// address the proxy gives it, and oauth2-proxy in front of the app.
type oauth2ProxySetup struct {
	signup      *process
	site, proxy string

	mu      sync.Mutex
	reached []string // the addresses the app was given, one per request
}

// startOAuth2Proxy starts the setup, the app registered with
// `signup clients add` and clientArgs.
func startOAuth2Proxy(t *testing.T, clientArgs ...string) *oauth2ProxySetup {
	t.Helper()
	proxyBin := needTool(t, "oauth2-proxy", "github.com/oauth2-proxy/oauth2-proxy/v7 (go install)")
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	signupPort, proxyPort := freePort(t), freePort(t)
	s := &oauth2ProxySetup{site: fmt.Sprintf("http://127.0.0.1:%d", signupPort), proxy: fmt.Sprintf("http://127.0.0.1:%d", proxyPort)}
	s.signup = startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-port", fmt.Sprint(signupPort), "-base-url", s.site)...))
	signup(t, s.signup.url, "ada@example.com")
	activate(t, s.signup.url, waitFor1(t, srv, "ada@example.com", "Activate"))

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reached = append(s.reached, r.Header.Get("X-Forwarded-Email"))
		s.mu.Unlock()
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>The app</title><h1>The app</h1><p id="email">%s</p><p id="path">%s</p></html>`,
			r.Header.Get("X-Forwarded-Email"), r.URL.Path)
	}))
	t.Cleanup(app.Close)
	client := addClient(t, filepath.Join(dir, "signup.db"), append([]string{"The app", "-redirect-uri", s.proxy + "/oauth2/callback"}, clientArgs...)...)
	startCmd(t, exec.Command(proxyBin, "--provider=oidc", "--oidc-issuer-url="+s.site, "--client-id="+client.ID, "--client-secret="+client.Secret,
		"--redirect-url="+s.proxy+"/oauth2/callback", "--http-address="+fmt.Sprintf("127.0.0.1:%d", proxyPort), "--upstream="+app.URL+"/",
		"--cookie-secret=0123456789abcdef0123456789abcdef", "--cookie-secure=false", "--email-domain=*", "--skip-provider-button=true",
		"--code-challenge-method=S256", "--scope=openid email profile"))
	waitFor(t, 20*time.Second, "oauth2-proxy to answer", func() bool {
		res, err := http.Get(s.proxy + "/ping")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
	return s
}

// TestOAuth2Proxy puts oauth2-proxy (go install'ed at a pinned version by
// .ci/run) with --provider=oidc in front of a small app: a person reaches
// the app only after logging in at signup, and the app sees their address.
func TestOAuth2Proxy(t *testing.T) {
	t.Parallel()
	s := startOAuth2Proxy(t)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, err := browser.Get(s.proxy + "/reports")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	login := res.Request.URL
	if res.StatusCode != 200 || login.Scheme+"://"+login.Host != s.site || login.Path != "/login" {
		t.Fatalf("the app without a login: %d at %s, want signup's login page", res.StatusCode, login)
	}
	s.mu.Lock()
	if len(s.reached) != 0 {
		t.Errorf("the app was reached without a login")
	}
	s.mu.Unlock()
	res, err = browser.PostForm(s.site+"/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {login.Query().Get("return_to")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Request.URL.String() != s.proxy+"/reports" || !strings.Contains(string(body), `<p id="email">ada@example.com</p>`) {
		t.Fatalf("after the login at signup: %d at %s:\n%s", res.StatusCode, res.Request.URL, body)
	}
}

// TestApacheModAuthOpenIDC protects a directory with Apache and Debian's
// libapache2-mod-auth-openidc (an OpenID-certified relying party), started
// by the test with its own config: a person reaches it only after logging
// in at signup, and the app behind it is given their address.
func TestApacheModAuthOpenIDC(t *testing.T) {
	t.Parallel()
	apache := needTool(t, "apache2", "apache2 libapache2-mod-auth-openidc")
	const module = "/usr/lib/apache2/modules/mod_auth_openidc.so"
	if _, err := os.Stat(module); err != nil {
		needTool(t, "no-mod-auth-openidc", "libapache2-mod-auth-openidc")
	}
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	signupPort, apachePort := freePort(t), freePort(t)
	site, front := fmt.Sprintf("http://127.0.0.1:%d", signupPort), fmt.Sprintf("http://127.0.0.1:%d", apachePort)
	s := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-port", fmt.Sprint(signupPort), "-base-url", site)...))
	signup(t, s.url, "ada@example.com")
	activate(t, s.url, waitFor1(t, srv, "ada@example.com", "Activate"))

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var email string
		for name, v := range r.Header { // mod_auth_openidc's OIDC_CLAIM_email
			if strings.EqualFold(name, "OIDC_CLAIM_email") {
				email = v[0]
			}
		}
		fmt.Fprintf(w, `<p id="email">%s</p><p id="path">%s</p>`, email, r.URL.Path)
	}))
	t.Cleanup(app.Close)
	client := addClient(t, filepath.Join(dir, "signup.db"), "Intranet", "-redirect-uri", front+"/private/redirect_uri")
	conf := filepath.Join(dir, "apache.conf")
	config := fmt.Sprintf(`ServerName 127.0.0.1
User www-data
Group www-data
Listen 127.0.0.1:%d
PidFile %[2]s/apache.pid
DefaultRuntimeDir %[2]s
ErrorLog %[2]s/error.log
LogLevel warn auth_openidc:info
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
LoadModule auth_openidc_module %[3]s
OIDCProviderMetadataURL %[4]s/.well-known/openid-configuration
OIDCClientID %[5]s
OIDCClientSecret %[6]s
OIDCRedirectURI %[7]s/private/redirect_uri
OIDCCryptoPassphrase 0123456789abcdef0123456789abcdef
OIDCScope "openid email profile"
OIDCPKCEMethod S256
<Location /private>
	AuthType openid-connect
	Require valid-user
	ProxyPass %[8]s/private
</Location>
`, apachePort, dir, module, site, client.ID, client.Secret, front, app.URL)
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(apache, "-f", conf, "-DFOREGROUND")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Apache and its workers, ended together
	proc := startCmd(t, cmd)
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) // before startCmd's own: the workers hold its output
	quick := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 20*time.Second, "Apache to answer", func() bool {
		res, err := quick.Get(front + "/")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	req, _ := http.NewRequest("GET", front+"/private/reports", nil)
	req.Header.Set("Accept", "text/html") // as a browser asks: mod_auth_openidc answers others 401
	res, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	login := res.Request.URL
	if res.StatusCode != 200 || login.Scheme+"://"+login.Host != site || login.Path != "/login" {
		errlog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("the directory without a login: %d at %s, want signup's login page\n%s\n%s", res.StatusCode, login, proc.logs, errlog)
	}
	res, err = browser.PostForm(site+"/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {login.Query().Get("return_to")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Request.URL.String() != front+"/private/reports" || !strings.Contains(string(body), `<p id="email">ada@example.com</p>`) {
		errlog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("after the login at signup: %d at %s:\n%s\n%s", res.StatusCode, res.Request.URL, body, errlog)
	}
}

// TestCheckRedirectURI: a redirect URI given to `signup clients add` is
// absolute, has no fragment, and is https:// — or http:// for a loopback
// host, or any with -env development.
func TestCheckRedirectURI(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		uri         string
		development bool
		ok          bool
	}{
		{"https://grafana.example.com/login/generic_oauth", false, true},
		{"http://127.0.0.1:8080/callback", false, true},
		{"http://[::1]:8080/callback", false, true},
		{"http://localhost/callback", false, true},
		{"http://grafana.example.com/callback", false, false},
		{"http://grafana.example.com/callback", true, true},
		{"https://app.example.com/cb#frag", false, false},
		{"/callback", false, false},
		{"ftp://app.example.com/cb", true, false},
		{"https://user@app.example.com/cb", false, false},
	} {
		if err := checkRedirectURI(c.uri, c.development); (err == nil) != c.ok {
			t.Errorf("checkRedirectURI(%q, development %t): %v, want ok %t", c.uri, c.development, err, c.ok)
		}
	}
	if out, code := runSignup(t, filepath.Join(t.TempDir(), "signup.db"), "-env", "production", "-base-url", "https://accounts.example.com", "-smtp-host", "smtp.example.com", "-smtp-sender", "no-reply@example.com", "clients", "add", "App", "-redirect-uri", "http://app.example.com/cb"); code != 2 ||
		!strings.Contains(out, "loopback") {
		t.Errorf("clients add with an http:// URI in production: exit %d\n%s", code, out)
	}
}
