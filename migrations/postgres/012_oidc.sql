-- Sign in with signup: OpenID Connect.
-- The apps registered by the operator (`signup clients`): a client secret
-- only as its SHA-256 (NULL for a public client), redirect URIs matched
-- exactly (space-separated), consent asked once per person and scopes.
CREATE TABLE oidc_clients (
	id             TEXT    PRIMARY KEY,
	name           TEXT    NOT NULL,
	secret_hash    BYTEA,
	redirect_uris  TEXT    NOT NULL,
	logout_uris    TEXT    NOT NULL DEFAULT '',
	consent        BIGINT  NOT NULL DEFAULT 0,
	created_at     BIGINT  NOT NULL
);

-- The keys: RS256 signing keys (PKCS #8, sealed on SQLite) — the newest
-- signs, a retired one stays in the JWKS until its tokens have expired —
-- and the key that encrypts access tokens (kind 'crypto').
CREATE TABLE oidc_keys (
	id          TEXT    PRIMARY KEY,
	kind        TEXT    NOT NULL,
	secret      BYTEA    NOT NULL,
	created_at  BIGINT  NOT NULL,
	retired_at  BIGINT
);

-- An authorization request between /authorize and the token endpoint:
-- what the app asked for (JSON), who logged in and how, and the code's
-- hash; a code is good once: used, it stays (used = 1) so that a second
-- use revokes the tokens issued from it.
CREATE TABLE oidc_requests (
	id         TEXT    PRIMARY KEY,
	client_id  TEXT    NOT NULL,
	data       TEXT    NOT NULL,
	user_id    BIGINT  REFERENCES users(id) ON DELETE CASCADE,
	auth_time  BIGINT  NOT NULL DEFAULT 0,
	amr        TEXT    NOT NULL DEFAULT '',
	code_hash  BYTEA    UNIQUE,
	used       BIGINT  NOT NULL DEFAULT 0,
	expiry     BIGINT  NOT NULL
);
CREATE INDEX oidc_requests_expiry ON oidc_requests(expiry);

-- Tokens issued to apps: an access token's id (the token itself is the id
-- encrypted), and with offline_access a refresh token's hash, rotated at
-- every use (used = 1 then); a family is every token of one grant, which
-- a refresh token used twice revokes.
CREATE TABLE oidc_tokens (
	id             TEXT    PRIMARY KEY,
	user_id        BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	client_id      TEXT    NOT NULL,
	request_id     TEXT    NOT NULL,
	family         TEXT    NOT NULL,
	scopes         TEXT    NOT NULL,
	amr            TEXT    NOT NULL,
	auth_time      BIGINT  NOT NULL,
	expiry         BIGINT  NOT NULL,
	refresh_hash   BYTEA    UNIQUE,
	refresh_expiry BIGINT  NOT NULL DEFAULT 0,
	used           BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX oidc_tokens_user ON oidc_tokens(user_id);
CREATE INDEX oidc_tokens_family ON oidc_tokens(family);
CREATE INDEX oidc_tokens_request ON oidc_tokens(request_id);

-- The apps a person allowed (clients registered with -consent), and for
-- which scopes.
CREATE TABLE oidc_consents (
	user_id    BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	client_id  TEXT    NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
	scopes     TEXT    NOT NULL,
	created_at BIGINT  NOT NULL,
	PRIMARY KEY (user_id, client_id)
);

-- How each session's person logged in, for the ID token's amr.
ALTER TABLE tokens ADD COLUMN amr TEXT NOT NULL DEFAULT '';
