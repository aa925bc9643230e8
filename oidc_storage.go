package main

// oidc_storage.go is signup's store behind op.Storage: what the OpenID
// Connect provider (oidc.go) asks of it — authorization requests and
// codes, tokens, keys, clients and the claims — each a call into the
// store (store_oidc*.go).

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// oidcStorage is signup's store as op sees it.
type oidcStorage struct {
	app     *application
	locales map[string]*oidc.Locale // the locale claim of each language offered, made once
}

var _ op.Storage = (*oidcStorage)(nil)

func (s *oidcStorage) CreateAuthRequest(ctx context.Context, in *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if in.CodeChallenge != "" && in.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	now := s.app.now()
	req := &oidcRequest{ID: newClientID(), ClientID: in.ClientID, RedirectURI: in.RedirectURI, State: in.State, Nonce: in.Nonce,
		Scopes: in.Scopes, ResponseType: string(in.ResponseType), ResponseMode: string(in.ResponseMode),
		Challenge: in.CodeChallenge, Method: string(in.CodeChallengeMethod), Prompt: in.Prompt, MaxAge: in.MaxAge, CreatedAt: millis(now)}
	if err := s.app.store.createOIDCRequest(ctx, req, now); err != nil {
		return nil, err
	}
	return authRequest{req}, nil
}

func (s *oidcStorage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	req, err := s.app.store.oidcRequest(ctx, id, s.app.now())
	if err != nil {
		return nil, err
	}
	return authRequest{req}, nil
}

func (s *oidcStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	req, err := s.app.store.codeRequest(ctx, hashSecret(code), s.app.now())
	if err != nil {
		return nil, s.grantRefused(err)
	}
	return authRequest{req}, nil
}

func (s *oidcStorage) SaveAuthCode(ctx context.Context, id, code string) error {
	return s.app.store.saveCode(ctx, id, hashSecret(code), s.app.now())
}

// grantRefused is the token endpoint's answer to err about a code or a
// refresh token: one used twice (logged and counted: what it issued is
// revoked) or gone is invalid_grant.
func (s *oidcStorage) grantRefused(err error) error {
	switch {
	case errors.Is(err, errCodeReused):
		s.app.logger.Warn("an authorization code used twice: the tokens issued from it are revoked")
		s.app.metrics.oidcTokens.WithLabelValues("", "code_reused").Inc()
	case errors.Is(err, errRefreshReused):
		s.app.logger.Warn("a refresh token used twice: its family is revoked")
		s.app.metrics.oidcTokens.WithLabelValues("", "refresh_reused").Inc()
	case !errors.Is(err, errNotFound):
		return err
	}
	return oidc.ErrInvalidGrant().WithDescription("invalid or used code or refresh token").WithParent(err)
}

// DeleteAuthRequest keeps the request: its used code must stay known, so
// that a second use revokes what it issued (purgeOIDC deletes it later).
func (s *oidcStorage) DeleteAuthRequest(context.Context, string) error { return nil }

func (s *oidcStorage) CreateAccessToken(ctx context.Context, r op.TokenRequest) (string, time.Time, error) {
	id, _, expiry, err := s.issue(ctx, r, false)
	return id, expiry, err
}

func (s *oidcStorage) CreateAccessAndRefreshTokens(ctx context.Context, r op.TokenRequest, _ string) (string, string, time.Time, error) {
	return s.issue(ctx, r, true)
}

// issue stores the tokens of the request r: a code's (a new family, the
// code taken), or a refresh token's (its family, the old one taken).
func (s *oidcStorage) issue(ctx context.Context, r op.TokenRequest, refresh bool) (string, string, time.Time, error) {
	now := s.app.now()
	t := &oidcToken{ID: newClientID(), Family: newClientID(), Scopes: r.GetScopes(), Expiry: now.Add(accessTokenTTL)}
	var from *oidcToken // the token refreshed; nil for a code's grant
	switch r := r.(type) {
	case authRequest:
		t.UserID, t.ClientID, t.RequestID, t.AMR, t.AuthTime = r.userID, r.ClientID, r.ID, r.amr, r.authTime
	case refreshRequest:
		from = r.oidcToken
		t.UserID, t.ClientID, t.RequestID, t.Family, t.AMR, t.AuthTime = from.UserID, from.ClientID, from.RequestID, from.Family, from.AMR, from.AuthTime
	default:
		return "", "", time.Time{}, fmt.Errorf("a token request of type %T", r)
	}
	var token string
	var hash []byte
	if refresh {
		token = newClientID() + newClientID()
		hash = hashSecret(token)
	}
	if err := s.app.store.createToken(ctx, t, from, hash, now.Add(refreshTokenTTL)); err != nil {
		return "", "", time.Time{}, s.grantRefused(err)
	}
	s.app.metrics.oidcTokens.WithLabelValues(t.ClientID, "issued").Inc()
	return t.ID, token, t.Expiry, nil
}

func (s *oidcStorage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	t, err := s.app.store.refreshGrant(ctx, hashSecret(token), s.app.now())
	if err != nil {
		return nil, s.grantRefused(err)
	}
	return refreshRequest{t}, nil
}

// TerminateSession is RP-initiated logout: the browser's signup session
// ends, and the tokens apps hold for the person.
func (s *oidcStorage) TerminateSession(ctx context.Context, userID, _ string) error {
	r, _ := ctx.Value(requestKey{}).(*http.Request)
	if r == nil {
		return nil
	}
	u, sess, err := s.app.browserSession(r)
	if errors.Is(err, errNotFound) {
		return nil // logged out already
	}
	if err != nil {
		return err
	}
	if userID != "" && userID != oidcSubject(u.ID) {
		return nil // the hint was someone else's: this browser's session stays
	}
	return s.app.store.logout(ctx, sess.hash, "session", s.app.now())
}

func (s *oidcStorage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	var err error
	if userID != "" { // an access token's id
		err = s.app.store.revokeToken(ctx, tokenOrID, nil, clientID)
	} else {
		err = s.app.store.revokeToken(ctx, "", hashSecret(tokenOrID), clientID)
	}
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	return nil
}

func (s *oidcStorage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	userID, id, err := s.app.store.refreshOwner(ctx, hashSecret(token), clientID, s.app.now())
	if errors.Is(err, errNotFound) {
		return "", "", op.ErrInvalidRefreshToken
	}
	return oidcSubject(userID), id, err
}

func (s *oidcStorage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	keys, err := s.app.store.signingKeys(ctx, s.app.now())
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 || !keys[0].retired.IsZero() {
		return nil, errors.New("no signing key")
	}
	return rsaKey{keys[0]}, nil
}

func (s *oidcStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet is the JWKS: the key that signs, and those retired within an ID
// token's lifetime.
func (s *oidcStorage) KeySet(ctx context.Context) ([]op.Key, error) {
	keys, err := s.app.store.signingKeys(ctx, s.app.now().Add(-idTokenTTL))
	if err != nil {
		return nil, err
	}
	set := make([]op.Key, len(keys))
	for i, k := range keys {
		set[i] = publicKey{rsaKey{k}}
	}
	return set, nil
}

func (s *oidcStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.app.store.client(ctx, id)
	if errors.Is(err, errNotFound) {
		return nil, errors.New("no such client")
	}
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return opClient{c}, nil
}

func (s *oidcStorage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	c, err := s.app.store.client(ctx, id)
	if errors.Is(err, errNotFound) {
		return errors.New("no such client")
	}
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if c.Public || subtle.ConstantTimeCompare(c.secretHash, hashSecret(secret)) != 1 {
		return errors.New("wrong client secret")
	}
	return nil
}

func (s *oidcStorage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil // deprecated: SetUserinfoFromRequest
}

// SetUserinfoFromRequest gives the ID token its claims.
func (s *oidcStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	id, err := strconv.ParseInt(r.GetSubject(), 10, 64)
	if err != nil {
		return err
	}
	u, err := s.app.store.userByID(ctx, id)
	if err != nil {
		return err
	}
	s.setUserinfo(info, u, scopes)
	return nil
}

// SetUserinfoFromToken is userinfo: the claims of a live access token's
// person — one read, no write; an ended or revoked token is refused.
func (s *oidcStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, u, err := s.app.store.accessToken(ctx, tokenID, s.app.now())
	if err != nil {
		return err
	}
	if oidcSubject(u.ID) != subject {
		return errors.New("the token is not the subject's")
	}
	s.setUserinfo(info, &u, t.Scopes)
	return nil
}

func (s *oidcStorage) SetIntrospectionFromToken(ctx context.Context, in *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, u, err := s.app.store.accessToken(ctx, tokenID, s.app.now())
	if err != nil {
		return err
	}
	if oidcSubject(u.ID) != subject || t.ClientID != clientID {
		return errors.New("the token is not the client's")
	}
	info := new(oidc.UserInfo)
	s.setUserinfo(info, &u, t.Scopes)
	in.SetUserInfo(info)
	in.Scope, in.ClientID, in.Expiration = t.Scopes, t.ClientID, oidc.FromTime(t.Expiry)
	return nil
}

// setUserinfo gives info u's claims, by scope: sub always; email and
// email_verified (always true: only activated accounts log in); name and
// locale (the account's language).
func (s *oidcStorage) setUserinfo(info *oidc.UserInfo, u *user, scopes []string) {
	info.Subject = oidcSubject(u.ID)
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, true
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.Locale = s.locales[s.app.templates.localeOf(u).tag]
		}
	}
}

func (s *oidcStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *oidcStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile grants are not supported")
}

func (s *oidcStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grants are not supported")
}

func (s *oidcStorage) Health(ctx context.Context) error { return s.app.store.read.PingContext(ctx) }
