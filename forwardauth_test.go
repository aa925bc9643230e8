package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// freePort returns a port of 127.0.0.1 that was free a moment ago, for a
// process that must be told its port before it starts (a proxy's config).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// behindApp is the small app behind the proxy: it shows who the proxy says
// is logged in, and counts the requests that reached it.
type behindApp struct {
	url  string
	mu   sync.Mutex
	seen []http.Header
}

func startBehindApp(t *testing.T) *behindApp {
	a := &behindApp{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Clone())
		a.mu.Unlock()
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>The app</title><h1>The app</h1><p id="user">%s</p><p id="email">%s</p><p id="path">%s</p></html>`,
			r.Header.Get("Remote-User"), r.Header.Get("Remote-Email"), r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

// last is the headers of the last request that reached the app, and how
// many did.
func (a *behindApp) last() (http.Header, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return nil, 0
	}
	return a.seen[len(a.seen)-1], len(a.seen)
}

// proxySetup is signup, the app and a proxy's port, for a proxy's config
// from deploy/ with its addresses replaced.
type proxySetup struct {
	signup *process
	app    *behindApp
	site   string // the proxy's site, http://127.0.0.1:PORT
	config string // the deploy file with this run's addresses
	port   int
}

// startProxied starts the app, signup, and the proxy that start runs with
// the deploy file's configuration for this run's addresses, on ports
// picked free a moment before. A free port is free only until someone
// takes it — another test's server, say — so a port taken meanwhile means
// another try with others: signup must log that it listens, and the
// proxy's answers must name it (their Server header has server).
func startProxied(t *testing.T, deployFile, server string, start func(dir, config string) *process) *proxySetup {
	t.Helper()
	app := startBehindApp(t)
	raw, err := os.ReadFile(filepath.Join("deploy", deployFile))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		port, signupPort := freePort(t), freePort(t)
		site := fmt.Sprintf("http://127.0.0.1:%d", port)
		args := append(baseArgs(t.TempDir()), "-port", strconv.Itoa(signupPort), "-base-url", fmt.Sprintf("http://127.0.0.1:%d", signupPort),
			"-trusted-proxies", "127.0.0.1", "-app-url", site+"/", "-app-name", "Example")
		p := startBinaryNoWait(t, args)
		p.url = fmt.Sprintf("http://127.0.0.1:%d", signupPort)
		if listened(t, p) {
			config := strings.NewReplacer("127.0.0.1:4000", strings.TrimPrefix(p.url, "http://"), "127.0.0.1:3000", strings.TrimPrefix(app.url, "http://"),
				"127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", port)).Replace(string(raw))
			proxy := start(t.TempDir(), config)
			if answers(proxy, port, server) {
				return &proxySetup{signup: p, app: app, site: site, config: config, port: port}
			}
			proxy.cmd.Process.Kill()
		}
		p.cmd.Process.Kill()
		if attempt == 5 {
			t.Fatalf("no free ports for signup and %s after %d tries", server, attempt)
		}
	}
}

// listened waits until signup logs that it listens (true) or exits (false).
func listened(t *testing.T, p *process) bool {
	t.Helper()
	up := false
	waitFor(t, 20*time.Second, "signup to listen or exit", func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		up = strings.Contains(p.logs.String(), "starting server")
		return up
	})
	return up
}

// answers waits until the proxy on port answers with server in its Server
// header (true); another server's answer there, or the proxy's exit (it
// could not bind the port), is false.
func answers(proxy *process, port int, server string) bool {
	client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-proxy.done:
			return false
		default:
		}
		res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			res.Body.Close()
			return strings.Contains(strings.ToLower(res.Header.Get("Server")), strings.ToLower(server))
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return false // something else answered, and not in HTTP
		}
		time.Sleep(20 * time.Millisecond) // polling for a port to open: no event to wait for
	}
	return false
}

// needTool returns the path of a Debian package's tool; without it the
// test is skipped, except under CI (.ci/run installs it).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs %s", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s; .ci/run installs it)", name, pkg)
	}
	return path
}

// checkProxy runs what a proxy in front of the app must do, over plain
// HTTP: without a session the app is not reached and the answer leads to
// signup's login page, which returns to the page asked for; with one (a
// cookie or a bearer token) the app gets Remote-User and Remote-Email,
// which a client cannot forge; a logout is refused at once.
func checkProxy(t *testing.T, s *proxySetup, wantLogin func(res *http.Response) string) {
	t.Helper()
	signup(t, s.signup.url, "ada@example.com")
	activateOnPage(t, s.signup.url, s.signup)
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, path string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.site+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}

	res := get(plain, "/dashboard?tab=1", "Remote-User", "1", "Remote-Email", "ada@example.com")
	if _, n := s.app.last(); n != 0 {
		t.Fatalf("without a session the app was reached (%d): %d", n, res.StatusCode)
	}
	login := wantLogin(res)
	want := s.signup.url + "/login?return_to=" + url.QueryEscape(s.site+"/dashboard?tab=1")
	if login != want {
		t.Errorf("not logged in, sent to %q, want %q", login, want)
	}

	v := newVisitor(t, s.signup.url)
	u, _ := url.Parse(login)
	a := v.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}, "return_to": {u.Query().Get("return_to")}})
	if a.status != 303 || a.location != s.site+"/dashboard?tab=1" {
		t.Fatalf("after logging in: %d %q, want back to the page asked for", a.status, a.location)
	}
	res = get(v.client, "/dashboard?tab=1", "Remote-User", "999", "Remote-Email", "mallory@example.com")
	seen, _ := s.app.last()
	if res.StatusCode != 200 || seen.Get("Remote-User") != "1" || seen.Get("Remote-Email") != "ada@example.com" || seen.Get("Remote-Name") != "Test User" {
		t.Errorf("logged in: %d, the app saw Remote-User %q Remote-Email %q Remote-Name %q", res.StatusCode, seen.Get("Remote-User"), seen.Get("Remote-Email"), seen.Get("Remote-Name"))
	}
	_, _, bearer := login2(t, s.signup.url)
	res = get(plain, "/api", "Authorization", "Bearer "+bearer)
	if seen, _ := s.app.last(); res.StatusCode != 200 || seen.Get("Remote-User") != "1" {
		t.Errorf("with a bearer token: %d, Remote-User %q", res.StatusCode, seen.Get("Remote-User"))
	}

	// The app's "Log out": a form on the app's site posting to /logout there.
	req, _ := http.NewRequest("POST", s.site+"/logout", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.site)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := v.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != s.signup.url+"/login" {
		t.Errorf("the app's Log out, through the proxy: %d %q, want 303 to signup's login page", res.StatusCode, res.Header.Get("Location"))
	}
	_, before := s.app.last()
	if res := get(v.client, "/dashboard"); res.StatusCode == 200 {
		t.Errorf("after the app's Log out the session still reaches the app: %d", res.StatusCode)
	}
	if _, after := s.app.last(); after != before {
		t.Error("after the app's Log out the app was reached")
	}
	cookie := &http.Cookie{Name: "signup_session", Value: "AAAAAAAAAAAAAAAAAAAAAAAAAA"}
	res = get(plain, "/dashboard", "Cookie", cookie.String())
	if _, after := s.app.last(); after != before || res.StatusCode == 200 {
		t.Errorf("after logout the app was reached: %d", res.StatusCode)
	}
}

// login2 logs in ada by the API and returns the answer and its token.
func login2(t *testing.T, base string) (int, map[string]any, string) {
	t.Helper()
	return login(t, base, "ada@example.com", "pa55word1234")
}

// activateOnPage activates the account of the only email signup sent so
// far, by the API (its capture's link), with the signup's password.
func activateOnPage(t *testing.T, base string, p *process) {
	t.Helper()
	var link string
	waitFor(t, 10*time.Second, "the captured welcome email", func() bool {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if i := strings.Index(line, "token="); i >= 0 && strings.Contains(line, "email captured") {
				link = strings.Trim(line[i+len("token="):], `"`)
			}
		}
		return link != ""
	})
	if status, body := post(t, "PUT", base+"/v1/users/activated", map[string]string{"token": link, "password": "pa55word1234"}); status != 200 {
		t.Fatalf("activate: %d %v", status, body)
	}
}

// TestNginxForwardAuth runs deploy/nginx.conf, as it is but for its
// addresses, in a real nginx in front of a small app.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	nginx := needTool(t, "nginx", "nginx")
	s := startProxied(t, "nginx.conf", "nginx", func(dir, config string) *process {
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		return startCmd(t, exec.Command(nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"),
			"-g", "daemon off; master_process off; pid "+filepath.Join(dir, "nginx.pid")+";"))
	})
	checkProxy(t, s, func(res *http.Response) string {
		if res.StatusCode != http.StatusFound {
			t.Errorf("nginx, not logged in: %d, want 302", res.StatusCode)
		}
		return res.Header.Get("Location")
	})
}

// TestCaddyForwardAuth runs deploy/Caddyfile, as it is but for its
// addresses, in a real Caddy in front of a small app, and a person logs in
// through it in Chromium and lands back on the page asked for.
func TestCaddyForwardAuth(t *testing.T) {
	t.Parallel()
	caddy := needTool(t, "caddy", "caddy")
	s := startProxied(t, "Caddyfile", "Caddy", func(dir, config string) *process {
		conf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(caddy, "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		return startCmd(t, cmd)
	})
	checkProxy(t, s, func(res *http.Response) string {
		if res.StatusCode != http.StatusFound {
			t.Errorf("Caddy, not logged in: %d, want signup's 302", res.StatusCode)
		}
		return res.Header.Get("Location")
	})

	// A person, in Chromium: the page asked for → the login page → back.
	ctx := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.site+"/reports"),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"),
		chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`//h1[text()="The app"]`),
	)
	if err != nil {
		t.Fatalf("logging in through Caddy in Chromium: %v\n%s", err, s.signup.logs)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	who, _ := chromedp.Run(ctx, chromedp.Text(`#user`))
	email, _ := chromedp.Run(ctx, chromedp.Text(`#email`))
	if loc != s.site+"/reports" || who != "1" || email != "ada@example.com" {
		t.Errorf("landed on %s as %q %q, want %s/reports as 1 ada@example.com", loc, who, email, s.site)
	}
}

// TestForwardAuth: the answers of /v1/forward-auth, in process: 200 with
// all three Remote-* headers for a live cookie or bearer token, 401
// without, the 302 only for a trusted proxy naming an original GET of an
// allowed origin; no database write per check; a session ended by logout,
// a password change or the deletion is refused at once.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.appURL = "https://app.example.com/"
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	bearer := activatedAccount(t, app, srv, "ada@example.com")
	v := newVisitor(t, app.url)
	v.logIn("ada@example.com", "pa55word1234")
	check := func(header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", app.url+"/v1/forward-auth", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	cookie := "signup_session=" + v.cookie("signup_session")
	changes := func() int64 {
		var n int64
		mustScan(t, app.store.write.QueryRow(`SELECT total_changes()`), &n)
		return n
	}
	before, logged := changes(), len(app.logs.String())
	for _, h := range [][]string{{"Cookie", cookie}, {"Authorization", "Bearer " + bearer}} {
		for range 50 {
			res := check(h...)
			if res.StatusCode != 200 || res.Header.Get("Remote-User") != "1" || res.Header.Get("Remote-Email") != "ada@example.com" || res.Header.Get("Remote-Name") != "Test User" {
				t.Fatalf("%s: %d %v", h[0], res.StatusCode, res.Header)
			}
		}
	}
	if n := changes() - before; n != 0 {
		t.Errorf("100 checks wrote %d rows", n)
	}
	if len(app.logs.String()) != logged {
		t.Errorf("checks logged:\n%s", app.logs.String()[logged:])
	}

	original := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/reports?q=1"}
	if res := check(original...); res.StatusCode != 302 ||
		res.Header.Get("Location") != app.cfg.baseURL+"/login?return_to="+url.QueryEscape("https://app.example.com/reports?q=1") {
		t.Errorf("a trusted proxy, not logged in: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	for name, h := range map[string][]string{
		"no original request": nil,
		"a POST":              {"X-Forwarded-Method", "POST", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/"},
		"another origin":      {"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example", "X-Forwarded-Uri", "/"},
		"a path trick":        {"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", `\\evil.example`},
		"a forged session":    {"Cookie", "signup_session=AAAAAAAAAAAAAAAAAAAAAAAAAA"},
	} {
		if res := check(h...); res.StatusCode != 401 || res.Header.Get("Remote-User") != "" {
			t.Errorf("%s: %d %q, want 401", name, res.StatusCode, res.Header.Get("Remote-User"))
		}
	}
	untrusted := newTestApp(t, srv, func(cfg *config) { cfg.appURL = "https://app.example.com/" })
	req, _ := http.NewRequest("GET", untrusted.url+"/v1/forward-auth", nil)
	for i := 0; i < len(original); i += 2 {
		req.Header.Set(original[i], original[i+1])
	}
	if res, err := http.DefaultTransport.RoundTrip(req); err != nil || res.StatusCode != 401 {
		t.Errorf("X-Forwarded-* from a client that is not a trusted proxy: %v %v, want 401", res.StatusCode, err)
	}

	// Ended: a logout, then a password change (the bearer token), at once.
	v.post("/logout", nil)
	if res := check("Cookie", cookie); res.StatusCode != 401 {
		t.Errorf("after logout: %d", res.StatusCode)
	}
	other := newVisitor(t, app.url)
	other.logIn("ada@example.com", "pa55word1234")
	other.post("/account/password", url.Values{"current_password": {"pa55word1234"}, "password": {"new-password-1"}})
	if res := check("Authorization", "Bearer "+bearer); res.StatusCode != 401 {
		t.Errorf("after a password change: %d", res.StatusCode)
	}
	otherCookie := "signup_session=" + other.cookie("signup_session")
	other.post("/account/delete", url.Values{"current_password": {"new-password-1"}})
	if res := check("Cookie", otherCookie); res.StatusCode != 401 {
		t.Errorf("after the deletion: %d", res.StatusCode)
	}
}

// TestCachedSessionEndsAtOnce: on SQLite a check most often answers from
// what it read before; every way a session ends, or its user changes, is
// seen by the very next check — with checks running all along.
func TestCachedSessionEndsAtOnce(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	clock := newClock(time.Now())
	app.setClock(clock.now)
	bearer := activatedAccount(t, app, srv, "ada@example.com")
	me := app.url + "/v1/users/me"
	forward := func(header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", app.url+"/v1/forward-auth", nil)
		req.Header.Set(header[0], header[1])
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	// Checks all along, so that the cache is filled while things change.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	background := bearer
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", app.url+"/v1/forward-auth", nil)
			req.Header.Set("Authorization", "Bearer "+background)
			if res, err := http.DefaultTransport.RoundTrip(req); err == nil {
				res.Body.Close()
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })

	ended := func(what string, header []string, end func()) {
		t.Helper()
		for range 3 {
			if res := forward(header...); res.StatusCode != 200 {
				t.Fatalf("%s: before, %d", what, res.StatusCode)
			}
		}
		end()
		if res := forward(header...); res.StatusCode != 401 {
			t.Errorf("%s: the next check answered %d, want 401", what, res.StatusCode)
		}
	}
	bearerOf := func() []string {
		_, _, token := login(t, app.url, "ada@example.com", "pa55word1234")
		return []string{"Authorization", "Bearer " + token}
	}
	t1 := bearerOf()
	ended("a logout by the API", t1, func() {
		bearerDo(t, "DELETE", app.url+"/v1/tokens/authentication", strings.TrimPrefix(t1[1], "Bearer "), nil)
	})

	t2 := bearerOf()
	ended("a session ended from another", t2, func() {
		_, body := bearerDo(t, "GET", me+"/sessions", bearer, nil)
		for _, s := range body["sessions"].([]any) {
			if s := s.(map[string]any); s["current"] != true {
				bearerDo(t, "DELETE", me+"/sessions/"+s["id"].(string), bearer, nil)
			}
		}
	})

	v := newVisitor(t, app.url)
	v.logIn("ada@example.com", "pa55word1234")
	cookie := []string{"Cookie", "signup_session=" + v.cookie("signup_session")}
	ended("every other session ended from the account page", cookie, func() {
		other := newVisitor(t, app.url)
		other.logIn("ada@example.com", "pa55word1234")
		other.post("/account/sessions", nil)
	})

	v.logIn("ada@example.com", "pa55word1234")
	cookie = []string{"Cookie", "signup_session=" + v.cookie("signup_session")}
	ended("the browser's own logout", cookie, func() { v.post("/logout", nil) })

	// The address changes: the next check names the new one. (Every other
	// session ended above took the first bearer token too.)
	bearer = strings.TrimPrefix(bearerOf()[1], "Bearer ")
	if res := forward("Authorization", "Bearer "+bearer); res.Header.Get("Remote-Email") != "ada@example.com" {
		t.Fatalf("Remote-Email %q", res.Header.Get("Remote-Email"))
	}
	bearerDo(t, "POST", me+"/email", bearer, map[string]string{"email": "ada@new.example", "current_password": "pa55word1234"})
	for _, to := range []string{"ada@example.com", "ada@new.example"} {
		post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": confirmLink(t, waitFor1(t, srv, to, "Confirm"))})
	}
	if res := forward("Authorization", "Bearer "+bearer); res.Header.Get("Remote-Email") != "ada@new.example" {
		t.Errorf("after the address change, Remote-Email %q", res.Header.Get("Remote-Email"))
	}

	// Idle and expired: from what was read, by the clock.
	v.logIn("ada@new.example", "pa55word1234")
	cookie = []string{"Cookie", "signup_session=" + v.cookie("signup_session")}
	ended("7 days unused", cookie, func() { clock.add(sessionIdle + time.Minute) })
	t3 := bearerOf2(t, app.url, "ada@new.example")
	ended("a bearer token's 24 hours", t3, func() { clock.add(authTTL) })

	// A reset by its emailed link ends every session.
	t4 := bearerOf2(t, app.url, "ada@new.example")
	ended("a password reset", t4, func() {
		msg := askReset(t, app, srv, "ada@new.example")
		post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": tokenOf(t, msg.data), "password": "new-password-1"})
	})
}

// bearerOf2 logs address in by the API and returns its Authorization header.
func bearerOf2(t *testing.T, base, address string) []string {
	t.Helper()
	_, _, token := login(t, base, address, "pa55word1234")
	return []string{"Authorization", "Bearer " + token}
}
