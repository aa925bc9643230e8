package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// form posts values to path as a browser on the same site would, and
// returns the status and the page.
func form(t *testing.T, base, path string, values url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+path, strings.NewReader(values.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", "null") // as Chromium sends it under Referrer-Policy: no-referrer
	return send(t, req)
}

// get fetches path and returns the status and the body.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") && res.StatusCode != http.StatusSeeOther {
		checkPageHeaders(t, req.URL.Path, res.Header)
		checkAccessible(t, req.URL.Path, string(body))
	}
	return res.StatusCode, string(body)
}

// checkPageHeaders checks the security headers every page is sent with.
func checkPageHeaders(t *testing.T, path string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s %q, want %q", path, k, got, v)
		}
	}
}

// inputRE matches an input with an id, which needs a label.
var inputRE = regexp.MustCompile(`<input id="([^"]+)"`)

// checkAccessible checks what a screen reader relies on: a language, one
// h1, a label for every visible input; and no script but passkeys.js,
// never inline.
func checkAccessible(t *testing.T, path, body string) {
	t.Helper()
	scripts := strings.Count(body, "<script") - strings.Count(body, `<script src="/static/passkeys.js" defer></script>`)
	if !regexp.MustCompile(`<html lang="[a-z]{2,3}(-[A-Za-z0-9]+)*">`).MatchString(body) || strings.Count(body, "<h1>") != 1 || scripts != 0 {
		t.Errorf("%s: want lang, one h1 and no script but passkeys.js:\n%s", path, body)
	}
	for _, m := range inputRE.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(body, `<label for="`+m[1]+`">`) {
			t.Errorf("%s: input %s has no label", path, m[1])
		}
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)

	if status, _ := get(t, app.url, "/"); status != http.StatusSeeOther {
		t.Errorf("GET /: %d, want a redirect to /signup", status)
	}
	status, body := get(t, app.url, "/signup")
	if status != 200 || !strings.Contains(body, `<form method="post" action="/signup"`) || !strings.Contains(body, "Signup") {
		t.Errorf("GET /signup: %d\n%s", status, body)
	}

	// A bad form comes back with a message per field, the name and email kept.
	status, body = form(t, app.url, "/signup", url.Values{"name": {"Ann <b>"}, "email": {"not-an-address"}, "password": {"short"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, `value="Ann &lt;b&gt;"`) || !strings.Contains(body, `value="not-an-address"`) ||
		!strings.Contains(body, "Email must be a valid email address") || !strings.Contains(body, "Password must be at least 8 characters long") {
		t.Errorf("bad signup form: %d\n%s", status, body)
	}
	if strings.Contains(body, "short") {
		t.Error("the password is shown again")
	}

	status, body = form(t, app.url, "/signup", url.Values{"name": {"Ann"}, "email": {"ann@example.com"}, "password": {"pa55word"}})
	if status != 200 || !strings.Contains(body, "Check your inbox") {
		t.Fatalf("signup form: %d\n%s", status, body)
	}
	link, token := linkOf(t, srv.waitMessages(t, 1, 10*time.Second)[0].data)
	path := strings.TrimPrefix(link, app.cfg.baseURL)

	// GET and HEAD show whose signup it is, and never use the token.
	for range 2 {
		status, body = get(t, app.url, path)
		if status != 200 || !strings.Contains(body, "<strong>Ann</strong>") || !strings.Contains(body, "UTC") ||
			!strings.Contains(body, `value="activate"`) || !strings.Contains(body, `value="cancel"`) {
			t.Fatalf("GET %s: %d\n%s", path, status, body)
		}
	}
	if res, err := http.Head(app.url + path); err != nil || res.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", res, err)
	}
	if status, body = get(t, app.url, "/activate?token=AAAAAAAAAAAAAAAAAAAAAAAAAA"); status != 422 || !strings.Contains(body, `action="/resend"`) {
		t.Errorf("an unknown token: %d\n%s", status, body)
	}

	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"pa55word"}})
	if status != 200 || !strings.Contains(body, "Your account is activated") {
		t.Fatalf("activate: %d\n%s", status, body)
	}
	if status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"pa55word"}}); status != 422 || !strings.Contains(body, `action="/resend"`) {
		t.Errorf("a used link: %d\n%s", status, body)
	}

	// The resend page answers the same whoever owns the address.
	if status, body = get(t, app.url, "/resend"); status != 200 || !strings.Contains(body, `<form method="post" action="/resend"`) {
		t.Errorf("GET /resend: %d\n%s", status, body)
	}
	_, known := form(t, app.url, "/resend", url.Values{"email": {"ann@example.com"}})
	_, unknown := form(t, app.url, "/resend", url.Values{"email": {"nobody@example.com"}})
	if strings.ReplaceAll(known, "ann@", "nobody@") != unknown {
		t.Errorf("resend pages differ by owner:\n%s\n---\n%s", known, unknown)
	}
	if status, _ = form(t, app.url, "/resend", url.Values{"email": {"nope"}}); status != 422 {
		t.Errorf("resend of a malformed address: %d", status)
	}

	res, err := http.Get(app.url + "/static/style.css")
	if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("style.css: %v %v", res, err)
	}
}

func TestThisWasntMe(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "notme@example.com")
	token := firstToken(t, srv)
	status, body := form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"cancel"}})
	if status != 200 || !strings.Contains(body, "The signup is cancelled") {
		t.Fatalf("cancel: %d\n%s", status, body)
	}
	if _, err := app.store.userByEmail(context.Background(), "notme@example.com"); err != errNotFound {
		t.Errorf("the pending account is still there: %v", err)
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": token, "password": "pa55word1234"}); status != 422 {
		t.Errorf("the token works after cancelling: %d", status)
	}
	// The address is free again.
	signup(t, app.url, "notme@example.com")
}

func TestCrossOriginPostsRefused(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.corsOrigins = []string{"https://app.example.com"} })
	try := func(path, contentType, body, origin string) *http.Response {
		req, _ := http.NewRequest("POST", app.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	signupJSON := `{"name": "X", "email": "victim@example.com", "password": "pa55word"}`
	if res := try("/v1/users", "text/plain", signupJSON, "https://evil.example"); res.StatusCode != 403 || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("cross-origin API signup: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res := try("/v1/tokens/activation", "text/plain", `{"email": "victim@example.com"}`, "https://evil.example"); res.StatusCode != 403 {
		t.Errorf("cross-origin resend: %d", res.StatusCode)
	}
	if res := try("/signup", "application/x-www-form-urlencoded", "name=X&email=victim%40example.com&password=pa55word", "https://evil.example"); res.StatusCode != 403 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("cross-origin form: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, path := range []string{"/login", "/logout", "/account/password", "/account/email", "/account/sessions", "/account/delete", "/confirm-email", "/activate", "/reset-password", "/resend", "/forgot-password"} {
		if res := try(path, "application/x-www-form-urlencoded", "email=victim%40example.com&password=pa55word", "https://app.example.com"); res.StatusCode != 403 {
			t.Errorf("cross-origin post of %s: %d, want 403", path, res.StatusCode)
		}
	}
	for _, route := range []string{"PUT /v1/users/me/password", "POST /v1/users/me/email", "PUT /v1/users/email", "DELETE /v1/users/me", "DELETE /v1/users/me/sessions/x", "POST /v1/tokens/authentication"} {
		method, path, _ := strings.Cut(route, " ")
		req, _ := http.NewRequest(method, app.url+path, strings.NewReader(`{}`))
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 403 {
			t.Errorf("cross-origin %s: %d, want 403", route, res.StatusCode)
		}
	}
	if _, err := app.store.userByEmail(context.Background(), "victim@example.com"); err != errNotFound {
		t.Errorf("a cross-origin post created an account: %v", err)
	}
	// A trusted origin may call the API from a browser, but not post the
	// pages' forms: they are for this site's own pages.
	if res := try("/signup", "application/x-www-form-urlencoded", "name=X&email=victim%40example.com&password=pa55word", "https://app.example.com"); res.StatusCode != 403 {
		t.Errorf("a trusted origin posting the signup form: got %d, want 403", res.StatusCode)
	}
	if res := try("/v1/users", "application/json", signupJSON, "https://app.example.com"); res.StatusCode != 202 {
		t.Errorf("trusted origin: %d", res.StatusCode)
	}
	if len(srv.waitMessages(t, 1, 10*time.Second)) != 1 {
		t.Error("not exactly one email")
	}
}

func TestTemplatesOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "templates")
	os.Mkdir(tmpl, 0o755)
	welcome, _ := templateFS.ReadFile("templates/welcome.tmpl")
	branded := strings.Replace(string(welcome), `{{define "subject"}}{{$.T "welcome.subject" .}}{{end}}`, `{{define "subject"}}Welcome aboard {{.AppName}}{{end}}`, 1)
	os.WriteFile(filepath.Join(tmpl, "welcome.tmpl"), []byte(branded), 0o644)
	os.WriteFile(filepath.Join(tmpl, "style.css"), []byte("body { background: #fafafa; }"), 0o644)

	srv := startSMTP(t, nil)
	args := append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-templates", tmpl, "-app-name", "Acme")...)
	p := startRun(t, args, nil)
	signup(t, p.url, "brand@example.com")
	msg := srv.waitMessages(t, 1, 10*time.Second)[0]
	if !strings.Contains(string(msg.data), "Subject: Welcome aboard Acme") {
		t.Errorf("the override was not used:\n%s", msg.data)
	}
	if _, body := get(t, p.url, "/signup"); !strings.Contains(body, "<title>Create your account · Acme</title>") {
		t.Errorf("the page does not name -app-name:\n%s", body)
	}
	if _, body := get(t, p.url, "/static/style.css"); body != "body { background: #fafafa; }" {
		t.Errorf("style.css not overridden: %q", body)
	}

	// A broken template, or a file that overrides nothing, stops the start
	// with exit 2, naming the file.
	for name, content := range map[string]string{
		"signup.html":   `{{define "content"}}{{.Nope}}{{end}}`,
		"welcome.tmpl":  `{{define "subject"}}{{.AppName}{{end}}`,
		"welcom.tmpl":   `typo`,
		"activate.html": `{{define "content"}}<p>{{.Name}</p>{{end}}`,
	} {
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, name), []byte(content), 0o644)
		cmd := exec.Command(builtBinary(t), append(baseArgs(t.TempDir()), "-templates", bad)...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), filepath.Join(bad, name)) {
			t.Errorf("broken %s: exit %d, output %q", name, code, out)
		}
	}
}

// browser returns a context for a headless Chromium, which it starts. Where
// Chromium is not installed the test is skipped, except under CI (.ci/run
// installs it).
func browser(t *testing.T, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("headless Chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844), // a phone
	)
	opts = append(opts, flags...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute) // a busy machine: the whole life of an account, axe-core on every page
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return ctx
}

// TestBrowserSignupAndActivate is a person's way through, in a real
// headless Chromium against the real binary with development mail capture:
// / → the signup form → "check your inbox" → the link in the captured
// email → "Activate my account" → "activated"; then a forgotten password:
// /forgot-password → the email → /reset-password → logged in with the new.
func TestBrowserSignupAndActivate(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dir := t.TempDir()
	// No rate limit: the browser loads a page, its stylesheet and favicon and
	// submits the form faster than a person types.
	p := startBinary(t, []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-mail-dir", filepath.Join(dir, "mail"), "-limiter-enabled=false"})

	err := chromedp.Do(ctx,
		chromedp.Navigate(p.url+"/signup"), // "/" leads to the login page, which links here
		chromedp.WaitVisible(chromedp.CSS(`#name`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.CSS(`#email`), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "analytical-engine"),
	)
	if err != nil {
		t.Fatalf("filling the signup form: %v\n%s", err, p.logs)
	}
	styled, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("button")).backgroundColor`))
	if err != nil || styled != "rgb(26, 86, 219)" {
		t.Errorf("the stylesheet did not apply under the CSP: button background %q (%v)", styled, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(`//h1[text()="Check your inbox"]`),
	)
	if err != nil {
		t.Fatalf("signing up in the browser: %v\n%s", err, p.logs)
	}

	var eml string
	waitFor(t, 10*time.Second, "the captured email", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		if len(files) == 1 {
			eml = files[0]
		}
		return eml != ""
	})
	data, err := os.ReadFile(eml)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := linkOf(t, data)
	// The capture writes the file, then the log line.
	waitFor(t, 10*time.Second, "the log to show the link next to the file", func() bool {
		return containsLine(p.logs.String(), "email captured", fmt.Sprintf("link=%q", link))
	})

	err = chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`button[value=activate]`)),
	)
	if err != nil {
		t.Fatalf("opening the link in the browser: %v\n%s", err, p.logs)
	}
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#password`), "analytical-engine"),
		chromedp.Click(chromedp.CSS(`button[value=activate]`)),
		chromedp.WaitVisible(`//h1[text()="Your account is activated"]`),
	)
	if err != nil {
		t.Fatalf("activating in the browser: %v\n%s", err, p.logs)
	}
	if !strings.Contains(who, "Ada Lovelace") {
		t.Errorf("the activation page does not name the signup:\n%s", who)
	}

	// Forgot the password: /forgot-password → the email → /reset-password →
	// a new password, which then logs in.
	err = chromedp.Do(ctx,
		chromedp.Navigate(p.url+"/forgot-password"),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "ada@example.com"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(`//h1[text()="Check your inbox"]`),
	)
	if err != nil {
		t.Fatalf("asking for a reset in the browser: %v\n%s", err, p.logs)
	}
	var resetEML string
	waitFor(t, 10*time.Second, "the captured reset email", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		for _, f := range files {
			if f != eml {
				resetEML = f
			}
		}
		return resetEML != ""
	})
	data, err = os.ReadFile(resetEML)
	if err != nil {
		t.Fatal(err)
	}
	resetLink, _ := linkOf(t, data)
	err = chromedp.Do(ctx, chromedp.Navigate(resetLink), chromedp.WaitVisible(chromedp.CSS(`#password`)))
	if err != nil {
		t.Fatalf("opening the reset link: %v", err)
	}
	checkAxe(t, ctx, "the reset-password page")
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#password`), "difference-engine"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(`//h1[text()="Your password is changed"]`),
	)
	if err != nil {
		t.Fatalf("resetting the password in the browser: %v\n%s", err, p.logs)
	}
	if status, _ := post(t, "POST", p.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "difference-engine"}); status != 201 {
		t.Errorf("login with the new password: %d", status)
	}
	if status, _ := post(t, "POST", p.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "analytical-engine"}); status != 401 {
		t.Errorf("login with the old password: %d", status)
	}
}

// TestPagesPolish: what a person met that was not a page: a mistyped path
// gets an HTML 404 in the site's style (the API keeps JSON); the icon is no
// 404; static files do not count against the rate limit, and a limited page
// view gets a page, not JSON; "check your inbox" links to the resend page,
// the signup form to /forgot-password; the reset form names its account
// for password managers.
func TestPagesPolish(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 0.01, 5 })
	for _, path := range []string{"/Signup", "/signup/", "/nowhere"} {
		req, _ := http.NewRequest("GET", app.url+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "Page not found") {
			t.Errorf("GET %s: got %d %s, want an HTML 404 page", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	for range 10 { // the stylesheet and the icon do not count
		if status, _ := get(t, app.url, "/static/style.css"); status != http.StatusOK {
			t.Fatalf("stylesheet: got %d, want 200", status)
		}
		if status, _ := get(t, app.url, "/favicon.ico"); status != http.StatusNoContent {
			t.Fatalf("favicon: got %d, want 204", status)
		}
	}
	status, body := get(t, app.url, "/signup")
	if status != http.StatusOK || !strings.Contains(body, `href="/forgot-password"`) {
		t.Errorf("signup page: got %d, want 200 with a link to /forgot-password", status)
	}
	status, body = form(t, app.url, "/signup", url.Values{"name": {"Ann"}, "email": {"ann@example.com"}, "password": {"pa55word"}})
	if status != http.StatusOK || !strings.Contains(body, `href="/resend"`) {
		t.Errorf("check your inbox: got %d, want 200 with a link to /resend\n%s", status, body)
	}
	status, body = get(t, app.url, "/signup") // the sixth request not for a static file: past the burst of 5
	if status != http.StatusTooManyRequests || !strings.Contains(body, "<h1>") {
		t.Errorf("a page over the rate limit: got %d, want an HTML 429 page\n%s", status, body)
	}
}

// TestResetFormNamesItsAccount: the reset page carries the account's
// address in a hidden username field, for password managers.
func TestResetFormNamesItsAccount(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "old-password")
	link, _ := linkOf(t, askReset(t, app, srv, "ada@example.com").data)
	status, body := get(t, app.url, strings.TrimPrefix(link, app.cfg.baseURL))
	if status != http.StatusOK || !strings.Contains(body, `autocomplete="username" value="ada@example.com"`) {
		t.Errorf("reset page: got %d, want a username field with the address\n%s", status, body)
	}
}

// TestPlainWordsInErrors: the errors a person reads name what they typed
// in words they use — no "address literal", and the reset page's error
// names the new password it asks for.
func TestPlainWordsInErrors(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	_, body := form(t, app.url, "/signup", url.Values{"name": {"Ada"}, "email": {"ada@[127.0.0.1]"}, "password": {"pa55word1234"}})
	if strings.Contains(body, "literal") || !strings.Contains(body, "not an IP address") {
		t.Errorf("the signup page's error for an address literal:\n%s", body)
	}
	activatedAccount(t, app, srv, "ada@example.com")
	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	_, body = form(t, app.url, "/reset-password", url.Values{"token": {reset}, "password": {"short"}})
	if !strings.Contains(body, "New password must") {
		t.Errorf("the reset page's error does not name the new password:\n%s", body)
	}
	css, _ := get(t, app.url, "/static/style.css")
	if _, body := get(t, app.url, "/static/style.css"); css != 200 || !strings.Contains(body, "select:focus-visible") {
		t.Error("the language select has no focus ring")
	}
}

// TestPhoneFriendlyWords: a French button's hyphen does not break (a
// no-break hyphen), and the 429 page has the site's header: its brand and
// the language switch.
func TestPhoneFriendlyWords(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 0.001, 1 })
	if status, css := get(t, app.url, "/static/style.css"); status != 200 || !strings.Contains(css, ".address, main p strong { word-break: break-all; }") {
		t.Error("addresses may break at their hyphens")
	}
	if msg, _ := app.templates.locales["fr"].text("account.email.button", nil); strings.Contains(msg, "e-mail") || !strings.Contains(msg, "e\u2011mail") {
		t.Errorf("the French button %q breaks at its hyphen", msg)
	}
	v := newVisitor(t, app.url)
	v.get("/signup")
	a := v.get("/signup")
	if a.status != http.StatusTooManyRequests || !strings.Contains(a.body, `class="brand"`) || !strings.Contains(a.body, `hreflang="de"`) {
		t.Errorf("the 429 page: %d, want the brand and the language switch in its header:\n%s", a.status, a.body)
	}
}
