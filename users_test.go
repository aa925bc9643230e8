package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

func TestActivationFlow(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "flow@example.com")
	token := firstToken(t, srv)
	if len(token) != 26 {
		t.Fatalf("token %q is not 26 characters", token)
	}
	_, html := parts(t, srv.messages()[0].data)
	if !strings.Contains(html, token) {
		t.Error("the HTML part lacks the token")
	}

	status, body := post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": token, "password": "pa55word1234"})
	if status != 200 {
		t.Fatalf("activate: %d %v", status, body)
	}
	u := body["user"].(map[string]any)
	if u["activated"] != true || u["email"] != "flow@example.com" {
		t.Errorf("activated user %v", u)
	}
	var tokens int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens`), &tokens)
	if tokens != 0 {
		t.Errorf("%d tokens left after activation, want 0", tokens)
	}

	// Used once: a second time is refused, as are malformed and unknown tokens.
	for _, bad := range []string{token, "tooshort", strings.Repeat("A", 26), strings.ToLower(token)} {
		status, body = post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": bad, "password": "pa55word1234"})
		errs, _ := body["error"].(map[string]any)
		if status != 422 || errs["token"] != "invalid or expired activation token" {
			t.Errorf("token %q: %d %v", bad, status, body)
		}
	}
	if status, body = post(t, "PUT", app.url+"/v1/users/activated", map[string]string{}); status != 422 {
		t.Errorf("no token: %d %v", status, body)
	}
}

func TestActivationTokenExpires(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	clock := newClock(time.Now())
	app.setClock(clock.now)
	signup(t, app.url, "expire@example.com")
	token := firstToken(t, srv)

	clock.add(activationTTL + time.Second)
	status, body := post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": token, "password": "pa55word1234"})
	if status != 422 {
		t.Errorf("expired token: %d %v", status, body)
	}
	n, err := app.store.purgeExpiredTokens(context.Background(), clock.now())
	if err != nil || n != 1 {
		t.Errorf("purge removed %d tokens (%v), want 1", n, err)
	}
}

func TestConcurrentActivationWithOneToken(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "race@example.com")
	token := firstToken(t, srv)

	const n = 20
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i], _ = doNoFatal("PUT", app.url+"/v1/users/activated", `{"token": "`+token+`", "password": "pa55word1234"}`)
		})
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[200] != 1 || counts[422] != n-1 {
		t.Errorf("statuses %v, want one 200 and %d 422", counts, n-1)
	}
}

func TestResendActivationToken(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	resend := func(address string) (int, map[string]any) {
		return post(t, "POST", app.url+"/v1/tokens/activation", map[string]string{"email": address})
	}
	_, unknown := resend("nobody@example.com")
	if status, body := resend("not an address"); status != 422 {
		t.Errorf("invalid address: %d %v", status, body)
	}

	signup(t, app.url, "again@example.com")
	first := firstToken(t, srv)
	status, body := resend("AGAIN@example.com")
	if status != 202 || fmt.Sprint(body) != fmt.Sprint(unknown) {
		t.Fatalf("resend: %d %v; for an unknown address: %v", status, body, unknown)
	}
	msg := srv.waitMessages(t, 2, 10*time.Second)[1]
	second := tokenOf(t, msg.data)
	if second == first {
		t.Fatal("the resent token is the same")
	}
	if msg.to != "again@example.com" || !bytes.Contains(msg.data, []byte("Subject: Your new Signup activation link")) {
		t.Errorf("resent email to %q:\n%s", msg.to, msg.data)
	}
	// Only the newest link works.
	if status, _ = post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": first, "password": "pa55word1234"}); status != 422 {
		t.Errorf("the first token still works after a resend: %d", status)
	}
	status, body = post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": second, "password": "pa55word1234"})
	if status != 200 {
		t.Fatalf("activate with the resent token: %d %v", status, body)
	}
	if status, body = resend("again@example.com"); status != 202 || fmt.Sprint(body) != fmt.Sprint(unknown) {
		t.Errorf("resend to an activated account: %d %v", status, body)
	}
	if status, _ = post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": second, "password": "pa55word1234"}); status != 422 {
		t.Errorf("the token still works after activation: %d", status)
	}
	// Nothing was sent to the unknown address, nor to the activated one.
	signup(t, app.url, "marker@example.com")
	msgs := srv.waitMessages(t, 3, 10*time.Second)
	if len(msgs) != 3 || msgs[2].to != "marker@example.com" {
		for _, m := range msgs {
			t.Errorf("sent to %s", m.to)
		}
	}
}

func TestNoPlaintextSecretsInDatabase(t *testing.T) {
	t.Parallel()
	down := true
	var mu sync.Mutex
	srv := startSMTP(t, func(s *testSMTP) {
		s.data = func(int64, *smtp.Conn) error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return tempFail
			}
			return nil
		}
	})
	app := newTestApp(t, srv, nil)
	const password = "correct horse battery staple"
	status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "Sec", "email": "sec@example.com", "password": password})
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %v", status, body)
	}
	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return containsLine(app.logs.String(), "will retry") })
	var sealed []byte
	mustScan(t, app.store.read.QueryRow(`SELECT message FROM outbox`), &sealed)
	message, err := app.store.openMessage(sealed)
	if err != nil {
		t.Fatal(err)
	}
	token := tokenOf(t, message)

	dbFiles := func() []byte {
		var all []byte
		for _, suffix := range []string{"", "-wal"} {
			b, _ := os.ReadFile(app.cfg.db + suffix)
			all = append(all, b...)
		}
		return all
	}
	// While the email waits, the outbox holds its message sealed with the
	// key beside the database: the token is in no database file, nor is the
	// password; the key opens the message (above).
	if files := dbFiles(); bytes.Contains(files, []byte(token)) || bytes.Contains(files, []byte(password)) || bytes.Contains(files, message[:40]) {
		t.Fatalf("pending: token present %v, password present %v", bytes.Contains(files, []byte(token)), bytes.Contains(files, []byte(password)))
	}
	if info, err := os.Stat(app.cfg.db + ".key"); err != nil || info.Mode().Perm() != 0o600 || info.Size() != 32 {
		t.Errorf("the message key: %v %v", info, err)
	}

	mu.Lock()
	down = false
	mu.Unlock()
	app.background(app.outbox.emails.sweep)
	srv.waitMessages(t, 1, 10*time.Second)
	waitFor(t, 10*time.Second, "the email marked sent", func() bool {
		pending, _, _ := app.store.outboxCounts(context.Background())
		return pending == 0
	})
	// The sweeper's periodic checkpoint truncates the WAL, old page images
	// and all; the file itself has the row's old bytes overwritten.
	// (It gives up when a reader is in the WAL, and the sweeper tries again.)
	waitFor(t, 10*time.Second, "a checkpoint that truncates the WAL", func() bool {
		truncated, err := app.store.checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return truncated
	})
	files := dbFiles()
	if bytes.Contains(files, []byte(token)) {
		t.Error("the token is still in the database file after its email was sent")
	}
	if bytes.Contains(files, []byte(password)) {
		t.Error("the password is in the database file")
	}
}

func TestConcurrentSignups(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)   // bcrypt cost 4
	app.hasher.maxWait = time.Minute // this is about locking, not load shedding: a slow -race run must not shed
	// Enough to queue on the one writer. Under two -race suites at once
	// on 2 cores, 50 outran the 5 s request deadline (a 503, no lock
	// error); the race detector slows SQLite (pure Go) several times.
	const n = 32
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	for i := range n {
		wg.Go(func() {
			res, body := doNoFatal("POST", app.url+"/v1/users",
				fmt.Sprintf(`{"name": "User %d", "email": "user%d@example.com", "password": "pa55word"}`, i, i))
			statuses[i], bodies[i] = res, body
		})
	}
	wg.Wait()
	for i := range n {
		if statuses[i] != 202 {
			t.Errorf("signup %d: %d %v", i, statuses[i], bodies[i])
		}
	}
	for _, bad := range []string{"locked", "BUSY"} {
		if strings.Contains(app.logs.String(), bad) {
			t.Errorf("logs mention %q", bad)
		}
	}
	srv.waitMessages(t, n, 20*time.Second)
}

// TestSameAnswerForEveryAddress: a signup is answered the same, by the API
// and by the form, for a new, a pending and an activated address; what
// differs is only the email the inbox gets.
func TestSameAnswerForEveryAddress(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "pending@example.com")
	signup(t, app.url, "owner@example.com")
	msgs := srv.waitMessages(t, 2, 10*time.Second)
	for _, m := range msgs {
		if m.to == "owner@example.com" {
			activate(t, app.url, m)
		}
	}

	var apiAnswers, pageAnswers []string
	for _, address := range []string{"new@example.com", "pending@example.com", "owner@example.com"} {
		body := map[string]string{"name": "Mallory <b>", "email": address, "password": "pa55word"}
		status, answer := post(t, "POST", app.url+"/v1/users", body)
		apiAnswers = append(apiAnswers, fmt.Sprint(status, answer))
		status, page := form(t, app.url, "/signup", url.Values{"name": {"Mallory"}, "email": {address}, "password": {"pa55word"}})
		pageAnswers = append(pageAnswers, fmt.Sprint(status, strings.ReplaceAll(page, address, "ADDRESS")))
	}
	for i := range apiAnswers {
		if apiAnswers[i] != apiAnswers[0] || pageAnswers[i] != pageAnswers[0] {
			t.Errorf("answers differ by the state of the address:\n%q\n%q", apiAnswers, pageAnswers)
			break
		}
	}

	got := map[string][]string{} // kinds of email per address, by subject
	for _, m := range srv.waitMessages(t, 8, 10*time.Second)[2:] {
		plain, _ := parts(t, m.data)
		switch {
		case strings.Contains(string(m.data), "Subject: Someone tried to sign up for Signup with your address"):
			got[m.to] = append(got[m.to], "account-exists")
			if !strings.Contains(plain, app.cfg.baseURL+"/forgot-password") {
				t.Errorf("the account-exists email does not link to /forgot-password:\n%s", plain)
			}
			if strings.Contains(plain, "Mallory") || !strings.Contains(plain, "Hi Test User") {
				t.Errorf("the account-exists email is not in the owner's name:\n%s", plain)
			}
		case strings.Contains(string(m.data), "Subject: Activate your Signup account"):
			got[m.to] = append(got[m.to], "welcome")
		default:
			t.Errorf("unexpected email to %s:\n%s", m.to, m.data)
		}
	}
	want := map[string][]string{
		"new@example.com":     {"welcome"}, // the second signup of it found it pending: a second welcome
		"pending@example.com": {"welcome", "welcome"},
		"owner@example.com":   {"account-exists", "account-exists"},
	}
	if len(got["new@example.com"]) != 2 || fmt.Sprint(got["pending@example.com"]) != fmt.Sprint(want["pending@example.com"]) ||
		fmt.Sprint(got["owner@example.com"]) != fmt.Sprint(want["owner@example.com"]) {
		t.Errorf("emails by address: %v", got)
	}
	// The activated account is unchanged.
	u, err := app.store.userByEmail(context.Background(), "owner@example.com")
	if err != nil || u.Name != "Test User" || bcrypt.CompareHashAndPassword(u.passwordHash, []byte("pa55word1234")) != nil {
		t.Errorf("the activated account changed: %+v %v", u, err)
	}
}

// TestNoHashWhereNoneIsNeeded: an activated address, or one over its
// budget, costs no bcrypt hash; it waits as long as a hash takes instead.
func TestNoHashWhereNoneIsNeeded(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	waited := recordWaits(app.application)

	signup(t, app.url, "owner@example.com") // new: a hash, no wait
	if h := app.metrics.hashes.Value(); h != 1 || len(waited()) != 0 {
		t.Fatalf("a new address: %d hashes, waits %v", h, waited())
	}
	activate(t, app.url, srv.waitMessages(t, 1, 10*time.Second)[0]) // a hash of the password it sets
	activated := app.metrics.hashes.Value()
	typical := time.Duration(app.hasher.took.Load())
	for range 5 { // an activated address, flooded
		signup(t, app.url, "owner@example.com")
	}
	if h := app.metrics.hashes.Value(); h != activated {
		t.Errorf("signups for an activated address took %d more hashes", h-activated)
	}
	if w := waited(); len(w) != 5 || w[0] != typical {
		t.Errorf("waits %v, want 5 of the typical hash time %v", w, typical)
	}

	// A pending address needs a hash, until its budget is spent.
	for range 5 {
		signup(t, app.url, "pending@example.com")
	}
	if h := app.metrics.hashes.Value(); h != activated+3 {
		t.Errorf("5 signups of a pending address took %d hashes, want 3 (then the budget is spent)", h-activated)
	}
	if w := waited(); len(w) != 5+2 {
		t.Errorf("%d waits, want 7", len(w))
	}
}

// TestPreHijacking: whoever signs up first with an address does not hold
// it: a later signup replaces the pending account's name and password, the
// first link dies, and only the newest activates.
func TestPreHijacking(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	ask := func(name, password string) {
		status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": name, "email": "victim@example.com", "password": password})
		if status != 202 {
			t.Fatalf("signup: %d %v", status, body)
		}
	}
	ask("Attacker", "attacker-pass")
	first := tokenOf(t, srv.waitMessages(t, 1, 10*time.Second)[0].data)
	ask("Victim", "victim-pass")
	second := srv.waitMessages(t, 2, 10*time.Second)[1]
	if plain, _ := parts(t, second.data); !strings.Contains(plain, "Hi Victim") {
		t.Errorf("the second welcome email is not in the new name:\n%s", plain)
	}
	// The activation page shows the newest signup.
	if _, page := get(t, app.url, "/activate?token="+tokenOf(t, second.data)); !strings.Contains(page, "<strong>Victim</strong>") {
		t.Errorf("the activation page does not show the newest signup:\n%s", page)
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": first, "password": "pa55word1234"}); status != 422 {
		t.Errorf("the first link still works: %d", status)
	}
	activateWith(t, app.url, second, "victim-pass")
	u, err := app.store.userByEmail(context.Background(), "victim@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Victim" || bcrypt.CompareHashAndPassword(u.passwordHash, []byte("victim-pass")) != nil ||
		bcrypt.CompareHashAndPassword(u.passwordHash, []byte("attacker-pass")) == nil {
		t.Errorf("the account is not the newest signup's: name %q", u.Name)
	}
	if status, _, _ := login(t, app.url, "victim@example.com", "attacker-pass"); status != 401 {
		t.Errorf("the first signer's password logs in: %d", status)
	}
	if status, _, _ := login(t, app.url, "victim@example.com", "victim-pass"); status != 201 {
		t.Errorf("the newest signer's password does not log in: %d", status)
	}
}

// activate activates the account whose welcome email is msg.
func activate(t *testing.T, base string, msg received) {
	t.Helper()
	activateWith(t, base, msg, "pa55word1234") // signup's password
}

// activateWith activates the account msg's link is for with password, by
// the API, and fails the test unless it is answered 200.
func activateWith(t *testing.T, base string, msg received, password string) {
	t.Helper()
	if status, body := post(t, "PUT", base+"/v1/users/activated", map[string]string{"token": tokenOf(t, msg.data), "password": password}); status != 200 {
		t.Fatalf("activate %s: %d %v", msg.to, status, body)
	}
}

// TestActivationAfterATypo: after a wrong password the page asks for a new
// one twice — but the signup's own password, typed once in the first
// field, activates, whichever step it is typed on.
func TestActivationAfterATypo(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "ada@example.com")
	token := tokenOf(t, waitFor1(t, srv, "ada@example.com", "Activate").data)
	status, body := form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"pa55word1235"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, `name="confirm"`) {
		t.Fatalf("a wrong password: %d, want 422 and the second step", status)
	}
	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"pa55word1234"}, "confirm": {""}})
	if status != http.StatusOK || !strings.Contains(body, "activated") {
		t.Errorf("the signup's password typed once on the second step: %d, want 200 and activated:\n%s", status, body)
	}
	passwordIs(t, app.url, "ada@example.com", "pa55word1234", "pa55word1235")
}
