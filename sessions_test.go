package main

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"
)

// visitor is a browser without JavaScript: it keeps cookies, sends forms
// as a page of the site does, and follows no redirect.
type visitor struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newVisitor(t *testing.T, base string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, base: base, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is the answer to a visitor's request.
type pageAnswer struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (v *visitor) do(req *http.Request) pageAnswer {
	v.t.Helper()
	res, err := v.client.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") && res.StatusCode != http.StatusSeeOther {
		checkAccessible(v.t, req.URL.Path, string(body))
	}
	return pageAnswer{res.StatusCode, res.Header.Get("Location"), string(body), res.Header}
}

func (v *visitor) get(path string) pageAnswer {
	v.t.Helper()
	req, _ := http.NewRequest("GET", v.base+path, nil)
	return v.do(req)
}

func (v *visitor) post(path string, values url.Values) pageAnswer {
	v.t.Helper()
	req, _ := http.NewRequest("POST", v.base+path, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", "null")
	return v.do(req)
}

// cookie is the value of the visitor's cookie name, or "".
func (v *visitor) cookie(name string) string {
	u, _ := url.Parse(v.base)
	for _, c := range v.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// logIn logs the visitor in with the login form, and fails the test unless
// it is sent on (303).
func (v *visitor) logIn(address, password string) pageAnswer {
	v.t.Helper()
	a := v.post("/login", url.Values{"email": {address}, "password": {password}})
	if a.status != http.StatusSeeOther {
		v.t.Fatalf("log in as %s: %d\n%s", address, a.status, a.body)
	}
	return a
}

// TestLoginPageAndSession: the login page logs in with a session cookie
// (a new session every time, stored as its hash), the account page shows
// the account and its sessions, / leads to it, logout ends the session;
// a failure is one message for every cause, with the resend link.
func TestLoginPageAndSession(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedAccount(t, app, srv, "ada@example.com")
	signup(t, app.url, "pending@example.com")
	v := newVisitor(t, app.url)

	if a := v.get("/account"); a.status != 303 || a.location != "/login?return_to=%2Faccount" {
		t.Errorf("/account logged out: %d %q", a.status, a.location)
	}
	if a := v.get("/"); a.location != "/login" { // the login page, with its link to sign up
		t.Errorf("/ logged out: %q", a.location)
	}
	a := v.get("/login")
	for _, want := range []string{`action="/login"`, `href="/forgot-password"`, `href="/signup"`, `autocomplete="current-password"`} {
		if !strings.Contains(a.body, want) {
			t.Errorf("the login page lacks %s", want)
		}
	}
	var failures []string
	for _, c := range [][2]string{{"ada@example.com", "wrong-password"}, {"nobody@example.com", "pa55word1234"}, {"pending@example.com", "pa55word1234"}} {
		a := v.post("/login", url.Values{"email": {c[0]}, "password": {c[1]}})
		if a.status != 401 || !strings.Contains(a.body, `href="/resend"`) || !strings.Contains(a.body, "only once the link in its welcome email") {
			t.Errorf("failed login %v: %d\n%s", c, a.status, a.body)
		}
		failures = append(failures, strings.ReplaceAll(a.body, c[0], "ADDRESS"))
	}
	if failures[0] != failures[1] || failures[0] != failures[2] {
		t.Error("failed logins differ by cause")
	}

	if a := v.logIn("ada@example.com", "pa55word1234"); a.location != "/account" {
		t.Errorf("after login: %q, want /account", a.location)
	}
	first := v.cookie("signup_session")
	if first == "" || v.cookie("signup_device") == "" {
		t.Fatal("no session cookie, or no device cookie")
	}
	sum := sha256.Sum256([]byte(first))
	var n int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE hash = $1 AND scope = 'session'`, sum[:]), &n)
	if n != 1 {
		t.Errorf("the session's hash stored %d times", n)
	}
	v.logIn("ada@example.com", "pa55word1234")
	if again := v.cookie("signup_session"); again == first || again == "" {
		t.Error("a second login kept the session token")
	}
	a = v.get("/account")
	for _, want := range []string{"Test User", "ada@example.com", "(this one)", `action="/account/password"`, `action="/account/email"`, `action="/account/sessions"`, `action="/account/delete"`, `action="/logout"`} {
		if a.status != 200 || !strings.Contains(a.body, want) {
			t.Errorf("the account page lacks %s:\n%s", want, a.body)
		}
	}
	if strings.Contains(a.body, first) {
		t.Error("the account page shows a session's token")
	}
	if a := v.get("/"); a.location != "/account" {
		t.Errorf("/ logged in: %q", a.location)
	}

	cookie := v.cookie("signup_session")
	if a := v.post("/logout", nil); a.status != 303 || a.location != "/login" {
		t.Errorf("logout: %d %q", a.status, a.location)
	}
	if v.cookie("signup_session") != "" {
		t.Error("the cookie outlived the logout")
	}
	sum = sha256.Sum256([]byte(cookie))
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE hash = $1`, sum[:]), &n)
	if n != 0 {
		t.Error("the session outlived the logout")
	}
	if a := v.get("/account"); a.status != 303 {
		t.Errorf("/account after logout: %d", a.status)
	}
}

// TestSessionCookie: the cookie's name and attributes, as DESIGN.md says
// browsers need them for each kind of -base-url.
func TestSessionCookie(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		base, domain string
		want         string
	}{
		{"http://localhost:4000", "", "signup_session=TOKEN; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"},
		{"https://signup.example.com", "", "__Host-signup_session=TOKEN; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax"},
		{"https://signup.example.com", "example.com", "__Secure-signup_session=TOKEN; Path=/; Domain=example.com; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax"},
	} {
		app := &application{cfg: config{baseURL: c.base, cookieDomain: c.domain, sessionLifetime: 720 * time.Hour}}
		if got := app.sessionCookie("TOKEN", app.cfg.sessionLifetime).String(); got != c.want {
			t.Errorf("%s %s:\n got %s\nwant %s", c.base, c.domain, got, c.want)
		}
	}
}

// TestSessionLifetime: a browser's session ends after 7 days unused and
// at -session-lifetime however used; its last use is written at most once
// a minute, so checking it is a read.
func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.sessionLifetime = 10 * 24 * time.Hour })
	activatedAccount(t, app, srv, "ada@example.com")
	clock := newClock(time.Now())
	app.setClock(clock.now)
	v := newVisitor(t, app.url)
	v.logIn("ada@example.com", "pa55word1234")
	sum := sha256.Sum256([]byte(v.cookie("signup_session")))
	lastUse := func() int64 {
		var ms int64
		mustScan(t, app.store.read.QueryRow(`SELECT last_used_at FROM tokens WHERE hash = $1`, sum[:]), &ms)
		return ms
	}
	made := lastUse()
	clock.add(30 * time.Second)
	v.get("/account")
	if lastUse() != made {
		t.Error("a use within the minute was written")
	}
	clock.add(31 * time.Second)
	v.get("/account")
	if lastUse() == made {
		t.Error("a use after a minute was not written")
	}
	for day := range 9 { // used every 6 days: still live on day 9
		clock.add(24 * time.Hour)
		if day%6 == 5 {
			if a := v.get("/account"); a.status != 200 {
				t.Fatalf("day %d: %d", day+1, a.status)
			}
		}
	}
	clock.add(24 * time.Hour) // day 10: the lifetime is over
	if a := v.get("/account"); a.status != 303 {
		t.Errorf("past -session-lifetime: %d, want 303 to the login page", a.status)
	}

	v.logIn("ada@example.com", "pa55word1234")
	clock.add(7*24*time.Hour + time.Minute)
	if a := v.get("/account"); a.status != 303 {
		t.Errorf("after 7 days unused: %d, want 303 to the login page", a.status)
	}
}

// TestReturnTo: after a login, return_to is followed to a path of this
// service or an allowed origin only; every other value is ignored.
func TestReturnTo(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.appURL = "https://app.example.com/home"
		cfg.returnOrigins = []string{"https://docs.example.com"}
	})
	activatedAccount(t, app, srv, "ada@example.com")
	for _, raw := range []string{
		"https://evil.example/",
		"//evil.example",
		"///evil.example",
		`/\evil.example`,
		`\\evil.example`,
		"/%5Cevil.example\\",
		"javascript:alert(1)",
		"JavaScript:alert(document.cookie)",
		"data:text/html,<script>alert(1)</script>",
		"https:evil.example",
		"https://app.example.com@evil.example/",
		"https://app.example.com.evil.example/",
		"http://app.example.com/", // not the app's scheme
		"https://app.example.com:8443/",
		"/\t/evil.example",
		"/\n/evil.example",
		" //evil.example",
		"%2F%2Fevil.example",
		"evil.example",
		"https://evil.example#https://app.example.com",
		"https://évil.example/",
	} {
		if got := app.returnTo(raw); got != "" {
			t.Errorf("returnTo(%q) = %q, want it ignored", raw, got)
		}
		v := newVisitor(t, app.url)
		a := v.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {raw}})
		if a.location != "https://app.example.com/home" {
			t.Errorf("login with return_to %q went to %q, want -app-url", raw, a.location)
		}
	}
	for raw, want := range map[string]string{
		"/account":                            "/account",
		"/account?tab=sessions#top":           "/account?tab=sessions#top",
		"/%2F%2Fevil.example":                 "/%2F%2Fevil.example", // a path here
		"https://app.example.com/dash?x=1":    "https://app.example.com/dash?x=1",
		"HTTPS://APP.EXAMPLE.COM/x":           "https://APP.EXAMPLE.COM/x",
		"https://docs.example.com/guide":      "https://docs.example.com/guide",
		app.cfg.baseURL + "/account?welcome=": app.cfg.baseURL + "/account?welcome=",
	} {
		if got := app.returnTo(raw); got != want {
			t.Errorf("returnTo(%q) = %q, want %q", raw, got, want)
		}
	}

	// The login page keeps an allowed return_to in its form and drops
	// another; the redirect is to it.
	v := newVisitor(t, app.url)
	if a := v.get("/login?return_to=" + url.QueryEscape("//evil.example")); strings.Contains(a.body, "evil.example") {
		t.Error("the login page kept a return_to that is not allowed")
	}
	a := v.get("/login?return_to=" + url.QueryEscape("https://app.example.com/dash"))
	m := regexp.MustCompile(`name="return_to" value="([^"]*)"`).FindStringSubmatch(a.body)
	if m == nil || m[1] != "https://app.example.com/dash" {
		t.Fatalf("the login form's return_to: %v", m)
	}
	if a := v.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {m[1]}}); a.location != "https://app.example.com/dash" {
		t.Errorf("login went to %q", a.location)
	}
	if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://docs.example.com https://app.example.com;") {
		t.Errorf("the CSP names no return origin in form-action: %s", csp)
	}
}

// TestAccountPageForms: activation by the page logs in and continues to
// the app; the account page changes the password (the other session
// ends), asks for an address change, ends sessions and deletes the
// account, each saying what happened; a wrong password changes nothing.
func TestAccountPageForms(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.appURL = "https://app.example.com/"
		cfg.appName, cfg.appNameGiven = "Example", true
	})
	v := newVisitor(t, app.url)
	v.post("/signup", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"pa55word1234"}})
	token := tokenOf(t, waitFor1(t, srv, "ada@example.com", "Activate").data)
	a := v.post("/activate", url.Values{"token": {token}, "password": {"pa55word1234"}, "action": {"activate"}})
	if a.status != 200 || !strings.Contains(a.body, `<a href="https://app.example.com/">Continue to Example</a>`) {
		t.Fatalf("activated: %d\n%s", a.status, a.body)
	}
	if a := v.get("/account"); a.status != 200 {
		t.Fatalf("the activation did not log in: %d", a.status)
	}
	other := newVisitor(t, app.url)
	other.logIn("ada@example.com", "pa55word1234")

	a = v.post("/account/password", url.Values{"current_password": {"wrong-password"}, "password": {"new-password-1"}})
	if a.status != 422 || !strings.Contains(a.body, "Current password is not your current password") {
		t.Errorf("a wrong current password: %d\n%s", a.status, a.body)
	}
	a = v.post("/account/password", url.Values{"current_password": {"pa55word1234"}, "password": {"new-password-1"}})
	if a.status != 200 || !strings.Contains(a.body, "Continue to Example") {
		t.Fatalf("change the password: %d\n%s", a.status, a.body)
	}
	if a := other.get("/account"); a.status != 303 {
		t.Errorf("the other session after the change: %d, want 303", a.status)
	}
	if a := v.get("/account"); a.status != 200 {
		t.Errorf("this session after the change: %d, want 200", a.status)
	}
	waitFor1(t, srv, "ada@example.com", "password was changed")

	other.logIn("ada@example.com", "new-password-1")
	a = v.get("/account")
	ids := regexp.MustCompile(`name="id" value="([0-9a-f]+)"`).FindAllStringSubmatch(a.body, -1)
	if len(ids) != 1 {
		t.Fatalf("end buttons: %v", ids)
	}
	a = v.post("/account/sessions", url.Values{"id": {ids[0][1]}})
	if a.status != 200 || !strings.Contains(a.body, "The session is ended.") {
		t.Errorf("end a session: %d", a.status)
	}
	if a := other.get("/account"); a.status != 303 {
		t.Errorf("the ended session: %d, want 303", a.status)
	}
	other.logIn("ada@example.com", "new-password-1")
	v.post("/account/sessions", nil)
	if a := other.get("/account"); a.status != 303 {
		t.Errorf("after ending every other session: %d, want 303", a.status)
	}

	a = v.post("/account/email", url.Values{"email": {"ada.new@example.com"}, "current_password": {"new-password-1"}})
	if a.status != 200 || !strings.Contains(a.body, "Check both inboxes") {
		t.Errorf("change the address: %d\n%s", a.status, a.body)
	}
	link := confirmLink(t, waitFor1(t, srv, "ada.new@example.com", "Confirm"))
	a = v.get("/confirm-email?token=" + link)
	if a.status != 200 || !strings.Contains(a.body, "<strong>ada@example.com</strong> to <strong>ada.new@example.com</strong>") {
		t.Errorf("the confirmation page: %d\n%s", a.status, a.body)
	}
	var n int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE scope LIKE 'email-change-%'`), &n)
	if n != 2 {
		t.Errorf("the page's GET used a token: %d left, want 2", n)
	}
	a = v.post("/confirm-email", url.Values{"token": {link}, "action": {"confirm"}})
	if a.status != 200 || !strings.Contains(a.body, "Confirmed from this address") {
		t.Errorf("confirm: %d\n%s", a.status, a.body)
	}
	link = confirmLink(t, waitFor1(t, srv, "ada@example.com", "Confirm"))
	a = v.post("/confirm-email", url.Values{"token": {link}, "action": {"confirm"}})
	if a.status != 200 || !strings.Contains(a.body, "Your email address is changed") {
		t.Errorf("confirm the other half: %d\n%s", a.status, a.body)
	}

	a = v.post("/account/delete", url.Values{"current_password": {"pa55word1234"}})
	if a.status != 422 {
		t.Errorf("delete with a wrong password: %d", a.status)
	}
	a = v.post("/account/delete", url.Values{"current_password": {"new-password-1"}})
	if a.status != 200 || !strings.Contains(a.body, "Your account is deleted") {
		t.Fatalf("delete: %d\n%s", a.status, a.body)
	}
	if v.cookie("signup_session") != "" {
		t.Error("the cookie outlived the account")
	}
	waitFor1(t, srv, "ada.new@example.com", "account was deleted")
}

// TestTheWayToLogIn: a returning person finds "Log in" — / leads a logged-
// out visitor to the login page, which offers to create an account; every
// page a logged-out person sees links to the login page, and the brand to
// /. A logged-in person's /signup and /login say who is logged in and lead
// to the account page (or on to an allowed return_to), the header to the
// account page.
func TestTheWayToLogIn(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.appURL = "http://app.localhost:3000" })
	activatedAccount(t, app, srv, "ada@example.com")
	v := newVisitor(t, app.url)
	for _, path := range []string{"/signup", "/login", "/resend", "/forgot-password", "/reset-password?token=NOSUCHTOKENAAAAAAAAAAAAAAA"} {
		a := v.get(path)
		if !strings.Contains(a.body, `href="/login"`) || !strings.Contains(a.body, `class="brand">`) || !strings.Contains(a.body, `href="/" class="brand"`) {
			t.Errorf("%s logged out: no link to /login in it, or the brand does not lead to /", path)
		}
	}
	if a := v.get("/login"); !strings.Contains(a.body, `href="/signup"`) {
		t.Error("the login page does not offer to create an account")
	}
	v.logIn("ada@example.com", "pa55word1234")
	for _, path := range []string{"/signup", "/login"} {
		a := v.get(path)
		if a.status != 200 || !strings.Contains(a.body, "You are logged in as ada@example.com") || !strings.Contains(a.body, `href="/account"`) || strings.Contains(a.body, `name="password"`) {
			t.Errorf("%s logged in: %d, want who is logged in and the way to the account, no form:\n%s", path, a.status, a.body)
		}
	}
	if a := v.get("/login?return_to=" + url.QueryEscape("http://app.localhost:3000/reports")); !strings.Contains(a.body, `href="http://app.localhost:3000/reports"`) {
		t.Error("/login logged in, with an allowed return_to: no way on to it")
	}
	if a := v.get("/login?return_to=" + url.QueryEscape("https://evil.example/")); strings.Contains(a.body, "evil.example") {
		t.Error("/login logged in led on to a return_to that is not allowed")
	}
}

// TestSigningUpFromBehindTheProxy: the login page's "Sign up" link keeps
// return_to; the welcome email's link carries it to the activation page,
// whose "Continue to …" leads back to the page first asked for. With no
// -app-name given, the app is named by -app-url's host, not "Signup".
func TestSigningUpFromBehindTheProxy(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.appURL = "http://app.localhost:3000/" })
	asked := "http://app.localhost:3000/reports?month=11"
	v := newVisitor(t, app.url)
	login := v.get("/login?return_to=" + url.QueryEscape(asked))
	m := regexp.MustCompile(`href="/signup\?return_to=([^"]+)"`).FindStringSubmatch(login.body)
	if m == nil {
		t.Fatalf("the login page's Sign up link drops return_to:\n%s", login.body)
	}
	if got, _ := url.QueryUnescape(m[1]); got != asked {
		t.Fatalf("the login page's Sign up link carries return_to %q, want %q", got, asked)
	}
	form := v.get("/signup?return_to=" + url.QueryEscape(asked))
	if !strings.Contains(form.body, `name="return_to" value="`+template.HTMLEscapeString(asked)+`"`) {
		t.Fatalf("the signup form does not keep return_to:\n%s", form.body)
	}
	v.post("/signup", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {asked}})
	plain, _ := parts(t, waitFor1(t, srv, "ada@example.com", "Activate").data)
	link := regexp.MustCompile(`(?m)^(http://\S+/activate\?token=[A-Z2-7]{26}&return_to=\S+)\r?$`).FindStringSubmatch(plain)
	if link == nil {
		t.Fatalf("the welcome email's link does not carry return_to:\n%s", plain)
	}
	page := v.get(strings.TrimPrefix(link[1], app.cfg.baseURL))
	token := regexp.MustCompile(`name="token" value="([A-Z2-7]{26})"`).FindStringSubmatch(page.body)
	if token == nil || !strings.Contains(page.body, `name="return_to" value="`+template.HTMLEscapeString(asked)+`"`) {
		t.Fatalf("the activation page does not carry return_to:\n%s", page.body)
	}
	done := v.post("/activate", url.Values{"token": {token[1]}, "password": {"pa55word1234"}, "action": {"activate"}, "return_to": {asked}})
	want := `<a href="` + template.HTMLEscapeString(asked) + `">Continue to app.localhost</a>`
	if done.status != 200 || !strings.Contains(done.body, want) {
		t.Errorf("activated: %d, want %s in:\n%s", done.status, want, done.body)
	}
}

// TestSessionsInWords: "Where you are logged in" names each session's
// browser and system in words and the address it was made from, this
// session first — not whole raw user agents.
func TestSessionsInWords(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	activatedAccount(t, app, srv, "ada@example.com")
	logIn := func(from, agent string) *visitor {
		v := newVisitor(t, app.url)
		req, _ := http.NewRequest("POST", app.url+"/login", strings.NewReader(url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("X-Forwarded-For", from)
		req.Header.Set("User-Agent", agent)
		if a := v.do(req); a.status != 303 {
			t.Fatalf("login from %s: %d", from, a.status)
		}
		return v
	}
	logIn("203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	me := logIn("198.51.100.9", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	page := me.get("/account").body
	for _, want := range []string{"Firefox on Linux", "Chrome on Windows", "from 203.0.113.7", "from 198.51.100.9"} {
		if !strings.Contains(page, want) {
			t.Errorf("the account page lacks %q", want)
		}
	}
	if strings.Contains(page, "Mozilla/5.0") {
		t.Error("the account page shows a raw user agent")
	}
	first := strings.Index(page, "<li>")
	if first < 0 || !strings.Contains(page[first:strings.Index(page[first:], "</li>")+first], "Chrome on Windows") {
		t.Error("this session is not listed first")
	}
}
