package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

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

// TestSendBudget: 20 resends at once from 20 client addresses send at most
// 3 emails to the address; over budget, nothing changes (the live link
// stays live), a WARN is logged and counted; an hour later it may send again.
func TestSendBudget(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	clock := newClock(time.Now())
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 2, 4
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	app.setClock(clock.now)
	signup(t, app.url, "flood@example.com") // 1 of 3
	live := tokenOf(t, srv.waitMessages(t, 1, 10*time.Second)[0].data)

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", app.url+"/v1/tokens/activation", strings.NewReader(`{"email": "flood@example.com"}`))
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				statuses[i] = res.StatusCode
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 202 {
			t.Errorf("resend %d: %d, want 202", i, s)
		}
	}
	waitDrained(t, app.application)
	msgs := srv.messages()
	if len(msgs) != 3 {
		t.Errorf("%d emails to one address, want 3 (its hourly budget)", len(msgs))
	}
	if n := scrape(t, app)[`signup_over_budget_total{budget="address"}`]; n != 18 {
		t.Errorf("over-budget counter %v, want 18", n)
	}
	if !containsLine(app.logs.String(), "level=WARN", "send budget of the address spent", "email=flood@example.com") {
		t.Error("no WARN line for the refused sends")
	}

	// Over budget, a signup changes nothing: the newest link still works
	// for the first password.
	newest := tokenOf(t, msgs[2].data)
	status, _ := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "Other", "email": "flood@example.com", "password": "other-password"})
	if status != 202 {
		t.Errorf("signup over budget: %d", status)
	}
	u, _ := app.store.userByEmail(context.Background(), "flood@example.com")
	if u.Name != "Test User" {
		t.Errorf("a signup over budget changed the pending account: %q", u.Name)
	}
	if live == newest {
		t.Fatal("the resends did not replace the link")
	}

	// An hour on, the address may get email again.
	clock.add(time.Hour + time.Second)
	if status, _ := post(t, "POST", app.url+"/v1/tokens/activation", map[string]string{"email": "flood@example.com"}); status != 202 {
		t.Errorf("resend an hour later: %d", status)
	}
	srv.waitMessages(t, 4, 10*time.Second)
}

func TestCORSForTrustedOrigins(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.corsOrigins = []string{"https://app.example.com"} })
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", app.url+"/v1/users", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight("https://app.example.com")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight from a trusted origin: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin got CORS headers: %v", res.Header)
	}
}
