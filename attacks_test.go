package main

// Tests of what an attacker tried: each fails on the code before its fix.

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestTakeoverThroughTheSendBudget: an attacker signs up three times with
// the victim's address and name, spending the address's send budget, so
// the victim's own signup sends nothing and the attacker's password stays.
// The victim activates from the newest email, with their own password:
// the page says it is not this signup's, the victim types it again, and
// the account ends with the victim's password — the attacker's no longer
// logs in.
func TestTakeoverThroughTheSendBudget(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	attacker := map[string]string{"name": "Tina Target", "email": "tina@example.com", "password": "attacker-pass"}
	for range budgets[allowanceStranger].perHour {
		if status, body := post(t, "POST", app.url+"/v1/users", attacker); status != http.StatusAccepted {
			t.Fatalf("attacker's signup: %d %v", status, body)
		}
	}
	// The newest email is the one whose link works (each signup replaced
	// the earlier links; the server may receive them in any order).
	var token string
	for _, m := range srv.waitMessages(t, budgets[allowanceStranger].perHour, 10*time.Second) {
		_, tok := linkOf(t, m.data)
		if _, err := app.store.pendingUser(context.Background(), hashToken(tok), time.Now()); err == nil {
			token = tok
		}
	}
	if token == "" {
		t.Fatal("no live link among the attacker's emails")
	}
	status, body := form(t, app.url, "/signup", url.Values{"name": {"Tina Target"}, "email": {"tina@example.com"}, "password": {"victim-pass"}})
	if status != http.StatusOK || !strings.Contains(body, "Check your inbox") {
		t.Fatalf("victim's signup: %d", status)
	}

	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"victim-pass"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "not the password this signup was made with") || !strings.Contains(body, `name="confirm"`) {
		t.Fatalf("activating with a password not the signup's: got %d without the question, want 422 asking to type it again\n%s", status, body)
	}
	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"victim-pass"}, "confirm": {"victim-pass"}})
	if status != http.StatusOK || !strings.Contains(body, "Your account is activated") {
		t.Fatalf("activating with the password typed twice: got %d, want 200\n%s", status, body)
	}
	passwordIs(t, app.url, "tina@example.com", "victim-pass", "attacker-pass")
}

// passwordIs fails the test unless address logs in with right and not with
// wrong.
func passwordIs(t *testing.T, base, address, right, wrong string) {
	t.Helper()
	if status, _, _ := login(t, base, address, wrong); status != http.StatusUnauthorized {
		t.Errorf("%s with %q: got %d, want 401", address, wrong, status)
	}
	if status, _, _ := login(t, base, address, right); status != http.StatusCreated {
		t.Errorf("%s with %q: got %d, want 201", address, right, status)
	}
}

// askReset asks for a password reset of address, the activated account of
// app whose welcome email srv already holds, and returns the reset email.
func askReset(t *testing.T, app *testApp, srv *testSMTP, address string) received {
	t.Helper()
	n := len(srv.messages())
	if status, _ := post(t, "POST", app.url+"/v1/tokens/password-reset", map[string]string{"email": address}); status != http.StatusAccepted {
		t.Fatalf("reset request: %d", status)
	}
	return srv.waitMessages(t, n+1, 10*time.Second)[n]
}

// TestTakeoverThroughResend: the attacker signs up again after the victim,
// so the victim's link dies; the victim asks for a new one, as the page
// suggests, and activates by the API with their password: it becomes the
// account's, whoever chose the pending one.
func TestTakeoverThroughResend(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signupAs := func(password string) {
		t.Helper()
		if status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "Tina Target", "email": "tina@example.com", "password": password}); status != http.StatusAccepted {
			t.Fatalf("signup: %d %v", status, body)
		}
	}
	signupAs("victim-pass")
	signupAs("attacker-pass")
	if status, _ := post(t, "POST", app.url+"/v1/tokens/activation", map[string]string{"email": "tina@example.com"}); status != http.StatusAccepted {
		t.Fatalf("resend: %d", status)
	}
	var resent received
	for _, m := range srv.waitMessages(t, 3, 10*time.Second) {
		if strings.Contains(string(m.data), "Subject: Your new Signup activation link") {
			resent = m
		}
	}
	activateWith(t, app.url, resent, "victim-pass")
	passwordIs(t, app.url, "tina@example.com", "victim-pass", "attacker-pass")
}

// TestResetEndsALoginInProgress: a login with the old password is being
// checked (it waits for a hashing slot) when the password is reset. The
// login finds the password changed when it would store its token: it gets
// 401, and no token of the account exists.
func TestResetEndsALoginInProgress(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "old-password")
	resetToken := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)

	app.hasher.maxWait = time.Minute
	for range cap(app.hasher.slots) { // every slot busy: the login waits in its check
		app.hasher.slots <- struct{}{}
	}
	result := make(chan int, 1)
	go func() {
		status, _ := doNoFatal("POST", app.url+"/v1/tokens/authentication", `{"email": "ada@example.com", "password": "old-password"}`)
		result <- status
	}()
	waitFor(t, 10*time.Second, "the login to begin", func() bool {
		var n int
		mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM login_attempts WHERE address_key = 'ada@example.com'`), &n)
		return n == 1
	})
	newHash, err := bcrypt.GenerateFromPassword([]byte("new-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := app.store.resetPassword(context.Background(), hashToken(resetToken), newHash, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	for range cap(app.hasher.slots) {
		<-app.hasher.slots
	}
	if status := <-result; status != http.StatusUnauthorized {
		t.Errorf("the login checked against the old password: got %d, want 401", status)
	}
	var tokens int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE scope = 'authentication'`), &tokens)
	if tokens != 0 {
		t.Errorf("got %d bearer tokens after the reset, want 0", tokens)
	}
}

// TestEqualWaitIsShedAlike: with every hashing slot busy, a request that
// needs no hash (a login to an unknown address, a signup of an activated
// one) is shed with the same 503 as one that does (a wrong password, a new
// address): the equal wait queues for a slot like a hash.
func TestEqualWaitIsShedAlike(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedUser(t, app, srv, "ada@example.com", "right-password")
	app.hasher.maxWait = 50 * time.Millisecond
	for range cap(app.hasher.slots) {
		app.hasher.slots <- struct{}{}
	}
	defer func() {
		for range cap(app.hasher.slots) {
			<-app.hasher.slots
		}
	}()
	requests := []struct{ name, path, body string }{
		{"login, wrong password", "/v1/tokens/authentication", `{"email": "ada@example.com", "password": "guess"}`},
		{"login, unknown address", "/v1/tokens/authentication", `{"email": "nobody@example.com", "password": "guess"}`},
		{"signup, new address", "/v1/users", `{"name": "N", "email": "new@example.com", "password": "pa55word1234"}`},
		{"signup, activated address", "/v1/users", `{"name": "N", "email": "ada@example.com", "password": "pa55word1234"}`},
	}
	var first map[string]any
	for _, r := range requests {
		res, body := do(t, "POST", app.url+r.path, r.body)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Errorf("%s with every slot busy: got %d, want 503 with Retry-After", r.name, res.StatusCode)
		}
		if first == nil {
			first = body
		} else if fmt.Sprint(body) != fmt.Sprint(first) {
			t.Errorf("%s: got body %v, want %v", r.name, body, first)
		}
	}
}

// TestNoTokenInTheLog: a client that asks for a page with a token in its
// query string and hangs up at once is not an internal error, and no log
// line holds a query string — a real error included.
func TestNoTokenInTheLog(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.env = "production" })
	const token = "SECRETTOKENSECRETTOKENSECR"
	addr := strings.TrimPrefix(app.url, "http://")
	for i := range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		path := "/reset-password?token=" + token
		if i%2 == 1 {
			path = "/activate?token=" + token
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
		c.Close()
	}
	// A request that does fail, with a token in its query string.
	rec := httptest.NewRecorder()
	app.serverError(rec, httptest.NewRequest("GET", "/reset-password?token="+token, nil), errors.New("boom"))
	waitFor(t, 10*time.Second, "the failing request logged", func() bool {
		return containsLine(app.logs.String(), "internal error", "path=/reset-password", "boom")
	})
	// And one whose client has gone.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	app.pageError(httptest.NewRecorder(), httptest.NewRequest("GET", "/activate?token="+token, nil).WithContext(ctx), context.Canceled)

	logs := app.logs.String()
	if strings.Contains(logs, token) || strings.Contains(logs, "?token=") {
		t.Errorf("a token or query string in the log:\n%s", logs)
	}
	if n := strings.Count(logs, "internal error"); n != 1 {
		t.Errorf("got %d internal errors in the log, want 1 (the real one)", n)
	}
}

// signupFrom signs address up as a client at from (behind a trusted proxy)
// and fails the test unless it is answered 202.
func signupFrom(t *testing.T, base, from, address string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/users", strings.NewReader(fmt.Sprintf(`{"name": "Flood", "email": %q, "password": "pa55word1234"}`, address)))
	req.Header.Set("X-Forwarded-For", from)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("signup of %s from %s: got %d, want 202", address, from, res.StatusCode)
	}
}

// floodApp is a test app behind a trusted proxy on loopback, with the
// per-client limiter on (and requests not what it limits here).
func floodApp(t *testing.T, srv *testSMTP) *testApp {
	return newTestApp(t, srv, func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 1000, 1000
	})
}

// waitOutboxIdle waits until nothing is pending in app's outbox.
func waitOutboxIdle(t *testing.T, app *testApp) {
	t.Helper()
	app.background(app.outbox.emails.sweep)
	waitFor(t, 20*time.Second, "the outbox drained", func() bool {
		pending, _, err := app.store.outboxCounts(context.Background())
		return err == nil && pending == 0
	})
}

// TestFloodThroughPlusAddresses: 30 signups of victim+N@example.com from
// ten client addresses are one mailbox's: the send budget lets 3 through.
func TestFloodThroughPlusAddresses(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := floodApp(t, srv)
	for i := range 30 {
		signupFrom(t, app.url, fmt.Sprintf("203.0.113.%d", i%10+1), fmt.Sprintf("Victim+%d@example.com", i))
	}
	waitOutboxIdle(t, app)
	if got := len(srv.messages()); got != budgets[allowanceStranger].perHour {
		t.Errorf("got %d emails in the victim's mailbox, want %d", got, budgets[allowanceStranger].perHour)
	}
}

// TestClientEmailLimit: one client address causes at most
// -limiter-emails-per-hour emails, however many mailboxes it spreads them
// over; the signups past it are answered alike and send nothing.
func TestClientEmailLimit(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := floodApp(t, srv)
	for i := range app.cfg.limiterEmails + 10 {
		signupFrom(t, app.url, "203.0.113.50", fmt.Sprintf("someone%d@example.com", i))
	}
	signupFrom(t, app.url, "203.0.113.51", "other@example.com") // another client is not held to it
	waitOutboxIdle(t, app)
	if got := len(srv.messages()); got != app.cfg.limiterEmails+1 {
		t.Errorf("got %d emails, want %d from the flooding client and 1 from the other", got, app.cfg.limiterEmails)
	}
	if !containsLine(app.logs.String(), "level=WARN", "emails of the client spent") {
		t.Error("no warning for the emails over the client's limit")
	}
}

// TestBackupDestIsAPlainPath: DEST names a file, whatever it looks like —
// "file:…" is not a URI to SQLite here, nor ?mode=memory an option — and
// the copy is there, mode 0600, and checks; a database without a message
// key gets no new key from a backup.
func TestBackupDestIsAPlainPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...))
	signup(t, p.url, "backup@example.com")
	p.signal(t, syscall.SIGTERM)
	p.wait(t, 20*time.Second)
	if err := os.Remove(filepath.Join(dir, "signup.db.key")); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"file:b3.db", "file:b4.db?mode=memory"} {
		cmd := exec.Command(builtBinary(t), "-db", filepath.Join(dir, "signup.db"), "backup", dest)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("backup %s: %v\n%s", dest, err, out)
		}
		info, err := os.Stat(filepath.Join(dir, dest))
		if err != nil || info.Size() == 0 || info.Mode().Perm() != 0o600 {
			t.Errorf("backup %s: got %v (%v), want a file of that name, mode 0600", dest, info, err)
			continue
		}
		db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: filepath.Join(dir, dest)}).EscapedPath()+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		mustScan(t, db.QueryRow(`SELECT count(*) FROM users`), &n)
		db.Close()
		if n != 1 {
			t.Errorf("backup %s: got %d users, want 1", dest, n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b3.db")); err == nil {
		t.Error("backup file:b3.db wrote b3.db")
	}
	if _, err := os.Stat(filepath.Join(dir, "signup.db.key")); err == nil {
		t.Error("a backup made a new message key")
	}
}

// TestCountersNotForProxiedClients: /metrics answers a connection from
// this machine only, never a request a proxy on loopback forwards (with
// -trusted-proxies or without), and shows no counter that rises for a
// known login and not an unknown one.
func TestCountersNotForProxiedClients(t *testing.T) {
	t.Parallel()
	for _, trusted := range [][]netip.Prefix{nil, {netip.MustParsePrefix("127.0.0.1/32")}} {
		app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.trustedProxies = trusted })
		req, _ := http.NewRequest("GET", app.url+"/metrics", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("/metrics through a proxy on loopback (trusted %v): got %d, want 404", trusted, res.StatusCode)
		}
		for name := range series(t, scrapeFrom(t, app.url, "127.0.0.1")) {
			if strings.HasPrefix(name, "signup_") && strings.Contains(name, "hash") {
				t.Errorf("/metrics shows %s, which would rise for a known login and not an unknown one", name)
			}
		}
	}
}

// healthcheckFrom opens a connection from local (an address of 127/8),
// asks for the healthcheck with keep-alive and returns the connection,
// idle and open, or an error if it was not answered 200.
func healthcheckFrom(base, local string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", res.StatusCode)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// TestIdleConnectionsFromManyAddresses: ten addresses each hold their
// whole per-client share of idle keep-alive connections, more than the
// overall cap together; a client from another address is still served,
// by closing the connection idle the longest.
func TestIdleConnectionsFromManyAddresses(t *testing.T) {
	t.Parallel()
	crowdOutNewcomer(t, "idle", healthcheckFrom)
}

// TestSilentConnectionsFromManyAddresses: ten addresses each hold their
// whole per-client share of connections that never send a request, more
// than the overall cap together; a client from another address is still
// served, by closing the connection that has waited the longest.
func TestSilentConnectionsFromManyAddresses(t *testing.T) {
	t.Parallel()
	crowdOutNewcomer(t, "silent", func(base, from string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		return d.Dial("tcp", strings.TrimPrefix(base, "http://")) // it says nothing
	})
}

// crowdOutNewcomer has ten addresses each hold eight connections opened by
// open against a binary capped at 64 in all and 8 per client, then checks a
// client from another address still gets five healthchecks answered. The
// server accepts in order: the newcomer's come after every held one.
func crowdOutNewcomer(t *testing.T, kind string, open func(base, from string) (net.Conn, error)) {
	t.Helper()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), "-max-conns", "64", "-max-conns-per-client", "8")...))
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for a := range 10 {
		for range 8 {
			if c, err := open(p.url, fmt.Sprintf("127.0.0.%d", a+2)); err == nil {
				held = append(held, c)
			}
		}
	}
	for i := range 5 {
		c, err := healthcheckFrom(p.url, "127.0.0.99")
		if err != nil {
			t.Fatalf("a new client's healthcheck %d with the cap full of %s connections: %v, want 200", i, kind, err)
		}
		c.Close()
	}
}

// TestAddressChangeTellsNothingOfTheNewAddress: three password resets
// spend an address's reset allowance only if it has an account, three
// signups its strangers' allowance whoever owns it; either way, an address
// change to it from the attacker's own account sends the attacker the
// same confirmation link — new, pending or activated, budget spent or not.
func TestAddressChangeTellsNothingOfTheNewAddress(t *testing.T) {
	t.Parallel()
	for _, state := range []string{"new", "pending", "activated"} {
		for _, spend := range []string{"resets", "signups"} {
			t.Run(state+" after "+spend, func(t *testing.T) {
				t.Parallel()
				srv := startSMTP(t, nil)
				app := newTestApp(t, srv, nil)
				token := activatedAccount(t, app, srv, "mallory@example.com")
				switch state {
				case "pending":
					signup(t, app.url, "victim@example.com")
				case "activated":
					activatedAccount(t, app, srv, "victim@example.com")
				}
				for range 3 {
					if spend == "resets" {
						post(t, "POST", app.url+"/v1/tokens/password-reset", map[string]string{"email": "victim@example.com"})
					} else {
						signup(t, app.url, "victim@example.com")
					}
				}
				status, _ := bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": "victim@example.com", "current_password": "pa55word1234"})
				if status != http.StatusAccepted {
					t.Fatalf("address change: %d, want 202", status)
				}
				// The attacker's own link comes, and works, in every case.
				link := confirmLink(t, waitFor1(t, srv, "mallory@example.com", "Confirm the new email address"))
				if status, body := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": link}); status != http.StatusOK {
					t.Errorf("the attacker's own confirmation link: %d %v, want 200", status, body)
				}
			})
		}
	}
}

// TestStrangersCannotSpendTheOwnersEmails: a stranger who keeps an
// address's budget spent (three signups an hour with it) stops none of the
// emails its owner asks for or must receive: a reset, a password change,
// an address change and a deletion each go out, and each change is made.
func TestStrangersCannotSpendTheOwnersEmails(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	for range 3 {
		signup(t, app.url, "ada@example.com") // account exists: two more fill the allowance the welcome began
	}
	waitFor(t, 10*time.Second, "two account-exists emails", func() bool {
		return emailsTo(srv, "ada@example.com", "Someone tried to sign up") == 2
	})
	askReset(t, app, srv, "ada@example.com")
	if status, body := bearerDo(t, "PUT", app.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"}); status != http.StatusOK {
		t.Fatalf("a password change: %d %v, want 200", status, body)
	}
	waitFor1(t, srv, "ada@example.com", "password was changed")
	if status, body := bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": "ada@new.example", "current_password": "new-password-1"}); status != http.StatusAccepted {
		t.Fatalf("an address change: %d %v, want 202", status, body)
	}
	waitFor1(t, srv, "ada@example.com", "Confirm the new email address")
	if status, _ := bearerDo(t, "DELETE", app.url+"/v1/users/me", token, map[string]string{"current_password": "new-password-1"}); status != http.StatusNoContent {
		t.Fatalf("a deletion: %d, want 204", status)
	}
	waitFor1(t, srv, "ada@example.com", "was deleted")
}

// TestDotVariantsAreOneMailbox: gmail.com ignores dots (and answers for
// googlemail.com): thirty signups of dot variants of one address from ten
// clients deliver what one address's budget allows.
func TestDotVariantsAreOneMailbox(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := floodApp(t, srv)
	variants := []string{"victim", "v.ictim", "vi.ctim", "vic.tim", "vict.im", "victi.m", "v.i.ctim", "v.ic.tim", "v.ict.im", "v.icti.m"}
	for i := range 30 {
		domain := "gmail.com"
		if i%3 == 0 {
			domain = "googlemail.com"
		}
		signupFrom(t, app.url, fmt.Sprintf("10.0.%d.1", i%10), variants[i%10]+"@"+domain)
	}
	waitOutboxIdle(t, app)
	if got := len(srv.messages()); got != budgets[allowanceStranger].perHour {
		t.Errorf("got %d emails in the victim's mailbox, want %d", got, budgets[allowanceStranger].perHour)
	}
}

// TestFloodOfOneDomain: a domain that delivers every address to one inbox
// (a catch-all) receives at most domainPerHour emails of the kinds a
// stranger can cause, whatever its addresses.
func TestFloodOfOneDomain(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := floodApp(t, srv)
	for i := range domainPerHour + 5 {
		signupFrom(t, app.url, fmt.Sprintf("10.%d.%d.1", i/250, i%250), fmt.Sprintf("box%d@catchall.example", i))
	}
	waitOutboxIdle(t, app)
	if got := len(srv.messages()); got != domainPerHour {
		t.Errorf("got %d emails to one domain, want %d", got, domainPerHour)
	}
}

// TestOwnerGetsBackInAfterTheAccountCap: ten clients × 5 wrong passwords
// spend the account's cap, so every login without a device cookie gets
// 429 — but the owner is not locked out: a logged-in session's password
// check is held to its own count, a reset by the emailed link lets the new
// password in at once (and gives the browser that reset a device cookie),
// and a device cookie from an earlier login survives the reset.
func TestOwnerGetsBackInAfterTheAccountCap(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	token := activatedAccount(t, app, srv, "ada@example.com")
	attempt := func(from, password string, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		return loginFrom(t, app.url, from, "ada@example.com", password, cookies...)
	}
	// The owner's browser logged in once before: it holds a device cookie.
	var device *http.Cookie
	for _, c := range attempt("198.51.100.7", "pa55word1234").Cookies() {
		if c.Name == deviceCookie {
			device = c
		}
	}
	if device == nil {
		t.Fatal("no device cookie from the owner's login")
	}
	for c := range maxAccountFailures / maxFailedLogins {
		for range maxFailedLogins {
			attempt(fmt.Sprintf("203.0.%d.1", c), "guess")
		}
	}
	if res := attempt("192.0.2.1", "pa55word1234"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a login from a new client past the account's cap: %d, want 429", res.StatusCode)
	}
	// Logged in, the owner's password check is their session's own.
	if status, body := bearerDo(t, "PUT", app.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"}); status != http.StatusOK {
		t.Fatalf("a password change of a logged-in owner past the account's cap: %d %v, want 200", status, body)
	}
	waitFor1(t, srv, "ada@example.com", "password was changed")
	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	res, err := http.PostForm(app.url+"/reset-password", url.Values{"token": {reset}, "password": {"newer-password-2"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the reset by its link: %d", res.StatusCode)
	}
	gotDevice := false
	for _, c := range res.Cookies() {
		gotDevice = gotDevice || (c.Name == deviceCookie && c.Value != "")
	}
	if !gotDevice {
		t.Error("the browser that reset by the emailed link got no device cookie")
	}
	if res := attempt("192.0.2.1", "newer-password-2"); res.StatusCode != http.StatusCreated {
		t.Errorf("the new password after a reset, from a new client: %d, want 201", res.StatusCode)
	}
	if res := attempt("198.51.100.7", "newer-password-2", device); res.StatusCode != http.StatusCreated {
		t.Errorf("the owner's browser with its device cookie after the reset: %d, want 201", res.StatusCode)
	}
}

// TestSessionsPerAccountAreCapped: an account holds at most maxPerAccount
// bearer tokens, browser sessions and device tokens each; a new login ends
// the oldest, and the sessions listed stay bounded.
func TestSessionsPerAccountAreCapped(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	first := activatedAccount(t, app, srv, "ada@example.com")
	var last string
	for range maxPerAccount + 10 {
		_, _, last = login(t, app.url, "ada@example.com", "pa55word1234")
	}
	for range maxPerAccount + 10 {
		// A new browser each time: a new session, and a new device token.
		newVisitor(t, app.url).logIn("ada@example.com", "pa55word1234")
	}
	for _, scope := range []string{"authentication", "session", "device"} {
		var n int
		mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE scope = $1`, scope), &n)
		if n != maxPerAccount {
			t.Errorf("%s tokens held: %d, want %d", scope, n, maxPerAccount)
		}
	}
	if res := withBearer(t, "GET", app.url+"/v1/users/me", first); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the oldest bearer token past the cap: %d, want 401", res.StatusCode)
	}
	status, body := bearerDo(t, "GET", app.url+"/v1/users/me/sessions", last, nil)
	if list, _ := body["sessions"].([]any); status != http.StatusOK || len(list) != 2*maxPerAccount {
		t.Errorf("sessions listed: %d, %d, want %d", status, len(list), 2*maxPerAccount)
	}
}
