package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// activatedUser signs address up with password and activates it.
func activatedUser(t *testing.T, app *testApp, srv *testSMTP, address, password string) {
	t.Helper()
	n := len(srv.messages())
	status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "Test User", "email": address, "password": password})
	if status != 202 {
		t.Fatalf("signup: %d %v", status, body)
	}
	activateWith(t, app.url, srv.waitMessages(t, n+1, 10*time.Second)[n], password)
}

// login posts the credentials and returns the status, the body and the
// token, if any.
func login(t *testing.T, base, address, password string) (int, map[string]any, string) {
	t.Helper()
	status, body := post(t, "POST", base+"/v1/tokens/authentication", map[string]string{"email": address, "password": password})
	token := ""
	if tok, ok := body["authentication_token"].(map[string]any); ok {
		token, _ = tok["token"].(string)
	}
	return status, body, token
}

// withBearer sends method to path with the bearer token and returns the
// response.
func withBearer(t *testing.T, method, url, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func TestLogin(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "right-password")
	signup(t, app.url, "pending@example.com") // password pa55word1234

	status, body, token := login(t, app.url, "ADA@example.com", "right-password")
	if status != 201 || len(token) != 26 || strings.Trim(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Fatalf("login: %d %v", status, body)
	}
	expiry, _ := time.Parse(time.RFC3339, body["authentication_token"].(map[string]any)["expiry"].(string))
	if d := time.Until(expiry); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("expiry %v, want 24 hours on", expiry)
	}
	// Stored only as a SHA-256 hash.
	sum := sha256.Sum256([]byte(token))
	var hashed, plain int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE hash = ? AND scope = 'authentication'`, sum[:]), &hashed)
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE hash = ?`, []byte(token)), &plain)
	if hashed != 1 || plain != 0 {
		t.Errorf("stored by hash %d, in plain %d", hashed, plain)
	}

	_, wrong, _ := login(t, app.url, "ada@example.com", "wrong-password")
	status, unknown, _ := login(t, app.url, "nobody@example.com", "right-password")
	if status != 401 || fmt.Sprint(wrong) != fmt.Sprint(unknown) || unknown["error"] != "invalid authentication credentials" {
		t.Errorf("wrong password %v and unknown address %d %v: want one 401", wrong, status, unknown)
	}
	if status, body, _ := login(t, app.url, "pending@example.com", "pa55word1234"); status != 401 || fmt.Sprint(body) != fmt.Sprint(wrong) {
		t.Errorf("pending account, its own password: got %d %v, want the 401 of a wrong password %v", status, body, wrong)
	}
	if status, _, _ := login(t, app.url, "pending@example.com", "wrong-password"); status != 401 {
		t.Errorf("pending account, wrong password: %d", status)
	}
	if status, _ := post(t, "POST", app.url+"/v1/tokens/authentication", map[string]string{"email": "bad", "password": "x"}); status != 422 {
		t.Errorf("malformed address: %d", status)
	}
}

// TestLoginUnknownAddressWaitsLikeAHash: an unknown address costs no bcrypt
// comparison but waits as long as one takes; a wrong password compares.
func TestLoginUnknownAddressWaitsLikeAHash(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "right-password")
	waited := recordWaits(app.application)
	hashes := app.metrics.hashes.Value()
	typical := time.Duration(app.hasher.took.Load())
	login(t, app.url, "nobody@example.com", "whatever-password")
	got := waited()
	if len(got) != 1 || got[0] != typical || app.metrics.hashes.Value() != hashes {
		t.Errorf("unknown address: waits %v (want one of %v), %d hashes", got, typical, app.metrics.hashes.Value()-hashes)
	}
	login(t, app.url, "ada@example.com", "wrong-password")
	if app.metrics.hashes.Value() != hashes+1 {
		t.Error("a wrong password was not compared")
	}
}

// TestLoginThrottleIsNoLockout: five wrong passwords from one client
// throttle that client on that account (429 with Retry-After), not the
// owner at another; the owner's success clears only the owner's own count,
// so the attacker stays throttled; fifty from all clients in an hour
// throttle every client but a browser with the account's device cookie.
// An unknown address is throttled exactly alike.
func TestLoginThrottleIsNoLockout(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	clock := newClock(time.Now())
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	activatedUser(t, app, srv, "ada@example.com", "right-password")
	app.setClock(clock.now)
	attempt := func(from, address, password string, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		return loginFrom(t, app.url, from, address, password, cookies...)
	}
	throttled := func(res *http.Response) bool {
		return res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") != ""
	}
	for _, address := range []string{"ada@example.com", "nobody@example.com"} {
		for i := range maxFailedLogins {
			if res := attempt("203.0.113.1", address, "guess"); res.StatusCode != 401 {
				t.Fatalf("%s guess %d: got %d, want 401", address, i+1, res.StatusCode)
			}
		}
		if res := attempt("203.0.113.1", address, "right-password"); !throttled(res) {
			t.Errorf("%s, the guessing client's sixth attempt: got %d, want 429 with Retry-After", address, res.StatusCode)
		}
	}
	owner := attempt("198.51.100.7", "ada@example.com", "right-password")
	if owner.StatusCode != 201 {
		t.Fatalf("the owner from another client: got %d, want 201 (no lockout)", owner.StatusCode)
	}
	var device *http.Cookie
	for _, c := range owner.Cookies() {
		if c.Name == deviceCookie {
			device = c
		}
	}
	if device == nil || !device.HttpOnly || device.SameSite != http.SameSiteLaxMode {
		t.Fatalf("the owner's login: got device cookie %v, want one, HttpOnly and SameSite=Lax", device)
	}
	if res := attempt("203.0.113.1", "ada@example.com", "guess"); !throttled(res) {
		t.Errorf("the guessing client after the owner's success: got %d, want still 429", res.StatusCode)
	}
	if res := attempt("198.51.100.8", "nobody@example.com", "guess"); res.StatusCode != 401 {
		t.Errorf("an unknown address from another client: got %d, want 401", res.StatusCode)
	}

	// Fifty failures from all clients in an hour: every client waits, but
	// the browser that logged in before.
	for _, address := range []string{"ada@example.com", "nobody@example.com"} {
		for c := 2; c <= maxAccountFailures/maxFailedLogins; c++ {
			for range maxFailedLogins {
				attempt(fmt.Sprintf("203.0.113.%d", c), address, "guess")
			}
		}
	}
	if res := attempt("198.51.100.9", "nobody@example.com", "guess"); !throttled(res) {
		t.Errorf("an unknown address after %d failures in the hour: got %d, want 429", maxAccountFailures, res.StatusCode)
	}
	if res := attempt("198.51.100.9", "ada@example.com", "right-password"); !throttled(res) {
		t.Errorf("a new client after %d failures in the hour: got %d, want 429", maxAccountFailures, res.StatusCode)
	}
	if res := attempt("198.51.100.9", "ada@example.com", "right-password", device); res.StatusCode != 201 {
		t.Errorf("the owner's browser with its device cookie: got %d, want 201", res.StatusCode)
	}
	clock.add(accountWindow)
	if res := attempt("203.0.113.1", "ada@example.com", "right-password"); res.StatusCode != 201 {
		t.Errorf("after the windows: got %d, want 201", res.StatusCode)
	}
}

func TestMeAndLogout(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "right-password")
	_, _, token := login(t, app.url, "ada@example.com", "right-password")

	req, _ := http.NewRequest("GET", app.url+"/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, body := func() (*http.Response, map[string]any) {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		decodeJSON(t, res, &out)
		return res, out
	}()
	u, _ := body["user"].(map[string]any)
	if res.StatusCode != 200 || u["email"] != "ada@example.com" || u["activated"] != true {
		t.Errorf("/me: %d %v", res.StatusCode, body)
	}
	for _, tok := range []string{"", "AAAAAAAAAAAAAAAAAAAAAAAAAA", "short"} {
		if res := withBearer(t, "GET", app.url+"/v1/users/me", tok); res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("/me with %q: %d %v", tok, res.StatusCode, res.Header)
		}
	}
	if res := withBearer(t, "DELETE", app.url+"/v1/tokens/authentication", token); res.StatusCode != 204 {
		t.Errorf("logout: %d", res.StatusCode)
	}
	if res := withBearer(t, "GET", app.url+"/v1/users/me", token); res.StatusCode != 401 {
		t.Errorf("/me after logout: %d", res.StatusCode)
	}
	if res := withBearer(t, "DELETE", app.url+"/v1/tokens/authentication", token); res.StatusCode != 401 {
		t.Errorf("logout again: %d", res.StatusCode)
	}

	// A token expires after 24 hours, and the sweeper's purge removes it.
	_, _, token = login(t, app.url, "ada@example.com", "right-password")
	clock := newClock(time.Now().Add(authTTL))
	app.setClock(clock.now)
	if res := withBearer(t, "GET", app.url+"/v1/users/me", token); res.StatusCode != 401 {
		t.Errorf("/me with an expired token: %d", res.StatusCode)
	}
	if n, err := app.store.purgeExpiredTokens(context.Background(), clock.now()); err != nil || n != 1 {
		t.Errorf("purged %d tokens (%v), want the expired bearer token", n, err)
	}
}

// TestPasswordReset is the whole flow by the API: the link read from the
// received email, the new password set, the old password and the old bearer
// token dead, the link single use.
func TestPasswordReset(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "old-password")
	_, _, bearer := login(t, app.url, "ada@example.com", "old-password")

	reset := func(address string) map[string]any {
		status, body := post(t, "POST", app.url+"/v1/tokens/password-reset", map[string]string{"email": address})
		if status != 202 {
			t.Fatalf("reset %s: %d %v", address, status, body)
		}
		return body
	}
	if fmt.Sprint(reset("ada@example.com")) != fmt.Sprint(reset("nobody@example.com")) {
		t.Error("the answer differs for an unknown address")
	}
	msg := srv.waitMessages(t, 2, 10*time.Second)[1]
	plain, _ := parts(t, msg.data)
	link, token := linkOf(t, msg.data)
	if msg.to != "ada@example.com" || !strings.HasPrefix(link, app.cfg.baseURL+"/reset-password?token=") ||
		!strings.Contains(string(msg.data), "Subject: Reset your Signup password") || !strings.Contains(plain, "UTC") {
		t.Fatalf("reset email to %s:\n%s", msg.to, plain)
	}

	if status, body := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"password": "short", "token": token}); status != 422 || body["error"].(map[string]any)["password"] == nil {
		t.Errorf("a short password: %d %v", status, body)
	}
	if status, body := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"password": "new-password", "token": token}); status != 200 {
		t.Fatalf("reset: %d %v", status, body)
	}
	if status, body := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"password": "newer-password", "token": token}); status != 422 ||
		body["error"].(map[string]any)["token"] != "invalid or expired password reset token" {
		t.Errorf("the link used twice: %d %v", status, body)
	}
	if status, _, _ := login(t, app.url, "ada@example.com", "old-password"); status != 401 {
		t.Errorf("the old password: %d", status)
	}
	if status, _, _ := login(t, app.url, "ada@example.com", "new-password"); status != 201 {
		t.Errorf("the new password: %d", status)
	}
	if res := withBearer(t, "GET", app.url+"/v1/users/me", bearer); res.StatusCode != 401 {
		t.Errorf("the old bearer token after a reset: %d", res.StatusCode)
	}

	// Nothing went to the unknown address.
	waitDrained(t, app.application)
	for _, m := range srv.messages() {
		if m.to != "ada@example.com" {
			t.Errorf("sent to %s", m.to)
		}
	}
}

// TestResetOfPendingAccount: a reset for a pending account sends the
// activation email instead; a reset token (here made by hand) also
// activates it, since the reset proved the inbox.
func TestResetOfPendingAccount(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "pending@example.com")
	firstToken(t, srv)
	post(t, "POST", app.url+"/v1/tokens/password-reset", map[string]string{"email": "pending@example.com"})
	msg := srv.waitMessages(t, 2, 10*time.Second)[1]
	if !strings.Contains(string(msg.data), "Subject: Your new Signup activation link") {
		t.Errorf("a reset for a pending account sent:\n%s", msg.data)
	}
	token, hash := newToken()
	u, _ := app.store.userByEmail(context.Background(), "pending@example.com")
	if _, err := app.store.write.Exec(`INSERT INTO tokens (hash, user_id, scope, expiry) VALUES (?, ?, 'password-reset', ?)`, hash, u.ID, millis(time.Now().Add(resetTTL))); err != nil {
		t.Fatal(err)
	}
	if status, body := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"password": "new-password", "token": token}); status != 200 {
		t.Fatalf("reset: %d %v", status, body)
	}
	if status, _, _ := login(t, app.url, "pending@example.com", "new-password"); status != 201 {
		t.Errorf("login after the reset of a pending account: %d", status)
	}
}

func TestResetPages(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "old-password")

	if status, body := get(t, app.url, "/forgot-password"); status != 200 || !strings.Contains(body, `<form method="post" action="/forgot-password"`) {
		t.Errorf("GET /forgot-password: %d\n%s", status, body)
	}
	_, known := form(t, app.url, "/forgot-password", url.Values{"email": {"ada@example.com"}})
	_, unknown := form(t, app.url, "/forgot-password", url.Values{"email": {"nobody@example.com"}})
	if strings.ReplaceAll(known, "ada@", "nobody@") != unknown {
		t.Errorf("forgot-password pages differ by owner:\n%s\n---\n%s", known, unknown)
	}
	link, token := linkOf(t, srv.waitMessages(t, 2, 10*time.Second)[1].data)
	path := strings.TrimPrefix(link, app.cfg.baseURL)
	for range 2 { // GET never uses the token
		if status, body := get(t, app.url, path); status != 200 || !strings.Contains(body, `name="token" value="`+token+`"`) {
			t.Fatalf("GET %s: %d\n%s", path, status, body)
		}
	}
	if status, body := form(t, app.url, "/reset-password", url.Values{"token": {token}, "password": {"short"}}); status != 422 || !strings.Contains(body, "New password must be at least 8 characters long") {
		t.Errorf("a short password: %d\n%s", status, body)
	}
	if status, body := form(t, app.url, "/reset-password", url.Values{"token": {token}, "password": {"new-password"}}); status != 200 || !strings.Contains(body, "Your password is changed") {
		t.Fatalf("reset: %d\n%s", status, body)
	}
	if status, body := get(t, app.url, path); status != 422 || !strings.Contains(body, `href="/forgot-password"`) {
		t.Errorf("a used link: %d\n%s", status, body)
	}
	if status, _, _ := login(t, app.url, "ada@example.com", "new-password"); status != 201 {
		t.Errorf("login with the new password: %d", status)
	}
}

// decodeJSON decodes res's body into dst.
func decodeJSON(t *testing.T, res *http.Response, dst any) {
	t.Helper()
	if err := json.NewDecoder(res.Body).Decode(dst); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
}

// TestLongPasswordsCountWhole: a password of 40 accented characters (80
// bytes, past bcrypt's 72) signs up and logs in, and one that differs only
// after its 72nd byte does not: none of it is cut off.
func TestLongPasswordsCountWhole(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	password := strings.Repeat("é", 40)
	activatedUser(t, app, srv, "ada@example.com", password)
	if status, body, _ := login(t, app.url, "ada@example.com", password); status != http.StatusCreated {
		t.Fatalf("login with the 80-byte password: got %d %v, want 201", status, body)
	}
	if status, _, _ := login(t, app.url, "ada@example.com", strings.Repeat("é", 36)+"éééa"); status != http.StatusUnauthorized {
		t.Errorf("login with a password that differs after byte 72: got %d, want 401", status)
	}
}

// TestBearerSchemeAnyCase: "bearer" is "Bearer" (RFC 7235: the scheme is
// case-insensitive).
func TestBearerSchemeAnyCase(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest("GET", app.url+"/v1/users/me", nil)
		req.Header.Set("Authorization", scheme+" "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %s …: %d, want 200", scheme, res.StatusCode)
		}
	}
}

// loginFrom asks for an authentication token as a client at address from
// (behind a trusted proxy) holding cookies, and returns the closed response.
func loginFrom(t *testing.T, base, from, address, password string, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/tokens/authentication",
		strings.NewReader(fmt.Sprintf(`{"email": %q, "password": %q}`, address, password)))
	req.Header.Set("X-Forwarded-For", from)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}
