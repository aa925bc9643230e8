package main

// oidc.go is Sign in with signup: an OpenID Connect provider, built on
// github.com/zitadel/oidc/v3's op package, with signup's store behind its
// storage interface (store_oidc.go keeps the rows). The issuer is
// -base-url; the login is signup's own (/oidc/login sends the browser to
// /login and back), so everything a login does applies; a client
// registered with -consent asks each person once (/oidc/consent).

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/text/language"
)

// The lifetimes of what apps are given.
const (
	accessTokenTTL  = 15 * time.Minute
	idTokenTTL      = time.Hour // a retired signing key stays in the JWKS this long
	refreshTokenTTL = 30 * 24 * time.Hour
)

// oidcPaths are the provider's endpoints, as op serves them.
var oidcPaths = []string{"/.well-known/openid-configuration", "/authorize", "/authorize/callback", "/oauth/token",
	"/oauth/introspect", "/userinfo", "/revoke", "/end_session", "/keys"}

// op traces every call through OpenTelemetry's global tracer, which
// signup never sets: its no-op tracer costs less (4 % of a userinfo call).
func init() { op.Tracer = noop.NewTracerProvider().Tracer("") }

// newProvider makes the OpenID Connect provider: its keys made at first
// start (store.ensureKeys), the access tokens' key read.
func (app *application) newProvider(ctx context.Context) (*op.Provider, error) {
	if err := app.store.ensureKeys(ctx, app.now()); err != nil {
		return nil, fmt.Errorf("the OpenID Connect keys: %w", err)
	}
	key, err := app.store.cryptoKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("the OpenID Connect keys: %w", err)
	}
	config := &op.Config{
		CryptoKey:                key,
		CryptoKeyId:              cryptoKeyID,
		DefaultLogoutRedirectURI: "/login",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English, language.German, language.French},
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess},
		SupportedClaims: []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "amr", "at_hash", "c_hash",
			"email", "email_verified", "name", "locale"},
	}
	aead, err := newTokenCrypto(key)
	if err != nil {
		return nil, err
	}
	// CORS for the provider's routes: any origin may read them (discovery,
	// the keys, and what an app asks with its own credentials or token;
	// sameOrigin holds posts to registered apps' origins), never with a
	// cookie — op's default would let every origin send one.
	opts := []op.Option{op.WithCrypto(aead), op.WithCORSOptions(&cors.Options{
		AllowedOrigins: []string{"*"},
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
		AllowedHeaders: []string{"Accept", "Accept-Language", "Authorization", "Content-Type"},
		ExposedHeaders: []string{"Location", "Content-Length"},
	})}
	if strings.HasPrefix(app.cfg.baseURL, "http://") {
		opts = append(opts, op.WithAllowInsecure()) // development: https everywhere else
	}
	locales := map[string]*oidc.Locale{}
	for _, tag := range app.templates.offered {
		locales[tag] = oidc.NewLocale(language.Make(tag))
	}
	return op.NewProvider(config, &oidcStorage{app, locales}, op.StaticIssuer(strings.TrimSuffix(app.cfg.baseURL, "/")), opts...)
}

// tokenCrypto seals what an access token carries (its id and subject) with
// AES-256-GCM, base64url: op's own JWE costs a JSON parse on every
// userinfo call, half of its time.
type tokenCrypto struct{ aead cipher.AEAD }

func newTokenCrypto(key [32]byte) (tokenCrypto, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return tokenCrypto{}, err
	}
	aead, err := cipher.NewGCM(block)
	return tokenCrypto{aead}, err
}

func (c tokenCrypto) Encrypt(s string) (string, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(s)+c.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(c.aead.Seal(nonce, nonce, []byte(s), nil)), nil
}

func (c tokenCrypto) Decrypt(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < c.aead.NonceSize() {
		return "", errors.New("not an access token")
	}
	n := c.aead.NonceSize()
	plain, err := c.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return "", errors.New("not an access token")
	}
	return string(plain), nil
}

// oidcHandler serves the provider's endpoints, or 503 when it could not
// be made (the database away at start): it is made again at the next
// request. Around op: discovery says only what signup does, the answers
// an app gets with tokens are never cached, userinfo refuses as RFC 6750
// asks, and a logout that names no one is asked first.
func (app *application) oidcHandler() http.Handler {
	var mu sync.Mutex
	var provider atomic.Pointer[op.Provider]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := provider.Load()
		if p == nil {
			mu.Lock()
			if p = provider.Load(); p == nil {
				made, err := app.newProvider(r.Context())
				if err != nil {
					mu.Unlock()
					app.serverError(w, r, err)
					return
				}
				p = made
				provider.Store(p)
			}
			mu.Unlock()
		}
		if r.URL.Path == "/.well-known/openid-configuration" {
			discovery(w, r, p)
			return
		}
		if slices.Contains(appCalls, r.URL.Path) {
			// Tokens and what they tell, never kept by a cache (RFC 6749 5.1).
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Pragma", "no-cache")
		}
		if r.URL.Path == "/userinfo" {
			w = bearerChallenge{w, r.Header.Get("Authorization") != "" || r.FormValue("access_token") != ""}
		}
		if r.URL.Path == "/end_session" { // TerminateSession ends this browser's session
			if app.askBeforeEndSession(w, r) {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), requestKey{}, r))
		}
		p.ServeHTTP(w, r)
	})
}

// discovery is op's discovery document, saying only what signup does:
// op's own lists the implicit flow and the JWT profile and device grants,
// which signup's clients never get.
func discovery(w http.ResponseWriter, r *http.Request, p *op.Provider) {
	config := op.CreateDiscoveryConfig(op.ContextWithIssuer(r.Context(), p.IssuerFromRequest(r)), p, p.Storage())
	config.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	config.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	config.DeviceAuthorizationEndpoint = ""
	w.Header().Set("Access-Control-Allow-Origin", "*") // as op's CORS answers its routes (newProvider)
	op.Discover(w, config)
}

// bearerChallenge answers userinfo's refusals as RFC 6750 asks: 401 with
// WWW-Authenticate: Bearer, and error="invalid_token" when the request had
// a token — op answers a token it cannot read 401 without the header, and
// one ended (SetUserinfoFromToken's error) 403.
type bearerChallenge struct {
	http.ResponseWriter
	hadToken bool
}

func (w bearerChallenge) WriteHeader(status int) {
	if status == http.StatusForbidden {
		status = http.StatusUnauthorized
	}
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		challenge := "Bearer"
		if w.hadToken {
			challenge += ` error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w bearerChallenge) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestKey carries the browser's request to the storage (TerminateSession
// ends its signup session).
type requestKey struct{}

// opClient is a registered client as op sees it.
type opClient struct{ c *oidcClient }

func (c opClient) GetID() string                    { return c.c.ID }
func (c opClient) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c opClient) PostLogoutRedirectURIs() []string { return c.c.LogoutURIs }
func (c opClient) ApplicationType() op.ApplicationType {
	if c.c.Public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (c opClient) AuthMethod() oidc.AuthMethod {
	if c.c.Public {
		return oidc.AuthMethodNone // with PKCE, which op then requires
	}
	return oidc.AuthMethodBasic // and client_secret_post (op.Config.AuthMethodPost)
}
func (c opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c opClient) LoginURL(id string) string           { return "/oidc/login?id=" + url.QueryEscape(id) }
func (c opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c opClient) IDTokenLifetime() time.Duration      { return idTokenTTL }

// DevMode lets a redirect URI be http:// — `signup clients add` allows it
// only for loopback hosts outside -env development.
func (c opClient) DevMode() bool { return true }
func (c opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) IsScopeAllowed(string) bool           { return false }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return true } // the claims in the ID token
func (c opClient) ClockSkew() time.Duration             { return 0 }

// authRequest is an authorization request as op sees it.
type authRequest struct{ *oidcRequest }

func (a authRequest) GetID() string          { return a.ID }
func (a authRequest) GetACR() string         { return "" }
func (a authRequest) GetAMR() []string       { return a.amr }
func (a authRequest) GetAudience() []string  { return []string{a.ClientID} }
func (a authRequest) GetAuthTime() time.Time { return a.authTime }
func (a authRequest) GetClientID() string    { return a.ClientID }
func (a authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.Challenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.Challenge, Method: oidc.CodeChallengeMethod(a.Method)}
}
func (a authRequest) GetNonce() string                   { return a.Nonce }
func (a authRequest) GetRedirectURI() string             { return a.RedirectURI }
func (a authRequest) GetResponseType() oidc.ResponseType { return oidc.ResponseType(a.ResponseType) }
func (a authRequest) GetResponseMode() oidc.ResponseMode { return oidc.ResponseMode(a.ResponseMode) }
func (a authRequest) GetScopes() []string                { return a.Scopes }
func (a authRequest) GetState() string                   { return a.State }
func (a authRequest) GetSubject() string                 { return oidcSubject(a.userID) }
func (a authRequest) Done() bool                         { return a.userID != 0 }

// refreshRequest is a grant being refreshed, as op sees it.
type refreshRequest struct{ *oidcToken }

func (t refreshRequest) GetAMR() []string            { return t.AMR }
func (t refreshRequest) GetAudience() []string       { return []string{t.ClientID} }
func (t refreshRequest) GetAuthTime() time.Time      { return t.AuthTime }
func (t refreshRequest) GetClientID() string         { return t.ClientID }
func (t refreshRequest) GetScopes() []string         { return t.Scopes }
func (t refreshRequest) GetSubject() string          { return oidcSubject(t.UserID) }
func (t refreshRequest) SetCurrentScopes(s []string) { t.Scopes = s }

// oidcSubject is the sub claim of account id: its id, as forward auth's
// Remote-User.
func oidcSubject(id int64) string { return strconv.FormatInt(id, 10) }

// rsaKey is a signing key as op sees it.
type rsaKey struct{ k signingKey }

func (k rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k rsaKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k rsaKey) Key() any                                    { return k.k.key }
func (k rsaKey) ID() string                                  { return k.k.id }
func (k rsaKey) Use() string                                 { return "sig" }

// publicKey is a key of the JWKS: its public half.
type publicKey struct{ rsaKey }

func (k publicKey) Key() any { return &k.k.key.PublicKey }
