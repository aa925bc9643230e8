package main

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// inviteAndActivate invites address on app as `signup users invite` does,
// and activates it from the emailed link with password; the nth email.
func inviteAndActivate(t *testing.T, app *testApp, srv *testSMTP, address, password string, nth int) {
	t.Helper()
	if _, err := app.store.invite(context.Background(), address, "", app.now()); err != nil {
		t.Fatal(err)
	}
	app.outbox.kick()
	msg := srv.waitMessages(t, nth, 10*time.Second)[nth-1]
	if msg.to != address || !strings.Contains(string(msg.data), "invited you") {
		t.Fatalf("email %d: to %s\n%s", nth, msg.to, msg.data)
	}
	_, token := linkOf(t, msg.data)
	if status, body := post(t, "PUT", app.url+"/v1/users/activated", map[string]string{"token": token, "password": password}); status != 200 {
		t.Fatalf("activate the invitation: %d %v", status, body)
	}
}

// TestSignupClosed: under -signup closed the API answers 403 and the page
// says so, whatever the address; an invitation still works.
func TestSignupClosed(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.signup = "closed" })
	inviteAndActivate(t, app, srv, "owner@example.com", "owners-password", 1)

	for _, address := range []string{"new@example.com", "owner@example.com"} {
		status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "N", "email": address, "password": "pa55word1234"})
		if status != 403 || !strings.Contains(body["error"].(string), "closed") {
			t.Errorf("API signup of %s: %d %v, want 403 saying signup is closed", address, status, body)
		}
		status, page := form(t, app.url, "/signup", url.Values{"name": {"N"}, "email": {address}, "password": {"pa55word1234"}})
		if status != 403 || !strings.Contains(page, "Signing up is closed") {
			t.Errorf("the signup form for %s: %d", address, status)
		}
	}
	if status, page := get(t, app.url, "/signup"); status != 200 || !strings.Contains(page, "Signing up is closed") || strings.Contains(page, `name="password"`) {
		t.Errorf("GET /signup under -signup closed: %d\n%s", status, page)
	}
	if status, _, _ := login(t, app.url, "owner@example.com", "owners-password"); status != 201 {
		t.Errorf("the invited account logs in: %d", status)
	}
	var accounts int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM users`), &accounts)
	if accounts != 1 || len(srv.messages()) != 1 {
		t.Errorf("%d accounts and %d emails after refused signups, want 1 and 1", accounts, len(srv.messages()))
	}
	if got := scrape(t, app)[`signup_signups_total{outcome="refused"}`]; got != 4 {
		t.Errorf("signups refused by the policy: %v, want 4", got)
	}
}

// TestSignupInviteOnly: under -signup invite only an invited address signs
// up; the others are answered alike, in the same way, and get nothing —
// but the owner of an activated account, who is told as always.
func TestSignupInviteOnly(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.signup = "invite" })
	inviteAndActivate(t, app, srv, "owner@example.com", "owners-password", 1)
	if _, err := app.store.invite(context.Background(), "invited@example.com", "", app.now()); err != nil {
		t.Fatal(err)
	}
	app.outbox.kick()
	srv.waitMessages(t, 2, 10*time.Second)

	answers := map[string]string{}
	for _, address := range []string{"stranger@example.com", "owner@example.com", "invited@example.com"} {
		res, body := do(t, "POST", app.url+"/v1/users", `{"name": "Someone", "email": "`+address+`", "password": "pa55word1234"}`)
		if res.StatusCode != 202 {
			t.Errorf("signup of %s: %d %v", address, res.StatusCode, body)
		}
		answers[address] = body["message"].(string)
	}
	if answers["stranger@example.com"] != answers["owner@example.com"] || answers["owner@example.com"] != answers["invited@example.com"] {
		t.Errorf("the answers differ by address: %v", answers)
	}
	got := srv.waitMessages(t, 4, 10*time.Second)
	waitFor(t, time.Second, "no fifth email", func() bool { return len(srv.messages()) == 4 })
	kinds := map[string]string{}
	for _, m := range got[2:] {
		kinds[m.to] = string(m.data)
	}
	if !strings.Contains(kinds["owner@example.com"], "You already have an account") {
		t.Errorf("the owner's email:\n%s", kinds["owner@example.com"])
	}
	if !strings.Contains(kinds["invited@example.com"], "/activate?token=") {
		t.Errorf("the invited address's welcome email:\n%s", kinds["invited@example.com"])
	}
	if _, ok := kinds["stranger@example.com"]; ok {
		t.Error("an address not invited got an email")
	}
	var strangers int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM users WHERE email_key = 'stranger@example.com'`), &strangers)
	if strangers != 0 {
		t.Error("an address not invited got an account")
	}
	if status, page := get(t, app.url, "/signup"); status != 200 || !strings.Contains(page, "by invitation") {
		t.Errorf("the signup page under -signup invite: %d", status)
	}
}

// TestSignupDomains: -signup-domains refuses an address of another domain
// with a 422 naming the rule, on the API and the page, whether or not it
// has an account.
func TestSignupDomains(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.signupDomains = []string{"example.com", "example.org"} })
	signup(t, app.url, "ada@Example.COM")
	for _, address := range []string{"ada@other.net", "ada@sub.example.com"} {
		status, body := post(t, "POST", app.url+"/v1/users", map[string]string{"name": "Ada", "email": address, "password": "pa55word1234"})
		errs, _ := body["error"].(map[string]any)
		if status != 422 || errs["email"] != "Only addresses at example.com, example.org may sign up here." {
			t.Errorf("signup of %s: %d %v", address, status, body)
		}
	}
	status, page := form(t, app.url, "/signup", url.Values{"name": {"Ada"}, "email": {"ada@other.net"}, "password": {"pa55word1234"}})
	if status != 422 || !strings.Contains(page, "Only addresses at example.com, example.org may sign up here.") {
		t.Errorf("the signup form for another domain: %d", status)
	}
	if status, page := get(t, app.url, "/signup"); !strings.Contains(page, "Only addresses at example.com, example.org may sign up.") {
		t.Errorf("the signup page does not say which domains: %d", status)
	}
}

// TestInvitationSpendsTheBudget: an invitation counts in the address's send
// budget, so that the operator's command cannot flood an inbox either;
// over it nothing changes.
func TestInvitationSpendsTheBudget(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	ctx := context.Background()
	for i := range 3 {
		if _, err := app.store.invite(ctx, "ada@example.com", "Ada", app.now()); err != nil {
			t.Fatalf("invitation %d: %v", i+1, err)
		}
	}
	var before int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM outbox WHERE channel = 'email'`), &before)
	if _, err := app.store.invite(ctx, "ada@example.com", "Someone Else", app.now()); !errors.Is(err, errOverBudget) {
		t.Fatalf("a fourth invitation within the hour: %v, want errOverBudget", err)
	}
	var after int
	var name string
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM outbox WHERE channel = 'email'`), &after)
	mustScan(t, app.store.read.QueryRow(`SELECT name FROM users WHERE email_key = 'ada@example.com'`), &name)
	if after != before || name != "Ada" {
		t.Errorf("over budget, the invitation changed something: %d emails (was %d), name %q", after, before, name)
	}
}
