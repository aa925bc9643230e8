package main

// Tests of what an attacker tried: each fails on the code before its fix.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
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
	for range budgetPerHour {
		if status, body := post(t, "POST", app.url+"/v1/users", attacker); status != http.StatusAccepted {
			t.Fatalf("attacker's signup: %d %v", status, body)
		}
	}
	newest := srv.waitMessages(t, budgetPerHour, 10*time.Second)[budgetPerHour-1]
	status, body := form(t, app.url, "/signup", url.Values{"name": {"Tina Target"}, "email": {"tina@example.com"}, "password": {"victim-pass"}})
	if status != http.StatusOK || !strings.Contains(body, "Check your inbox") {
		t.Fatalf("victim's signup: %d", status)
	}

	_, token := linkOf(t, newest.data)
	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"victim-pass"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "not the password this signup was made with") || !strings.Contains(body, `name="confirm"`) {
		t.Fatalf("activating with a password not the signup's: got %d without the question, want 422 asking to type it again\n%s", status, body)
	}
	status, body = form(t, app.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"victim-pass"}, "confirm": {"victim-pass"}})
	if status != http.StatusOK || !strings.Contains(body, "Your account is activated") {
		t.Fatalf("activating with the password typed twice: got %d, want 200\n%s", status, body)
	}
	if status, _, _ := login(t, app.url, "tina@example.com", "attacker-pass"); status != http.StatusUnauthorized {
		t.Errorf("the attacker's password: got %d, want 401", status)
	}
	if status, _, _ := login(t, app.url, "tina@example.com", "victim-pass"); status != http.StatusCreated {
		t.Errorf("the victim's password: got %d, want 201", status)
	}
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
	activateWith(t, app.url, srv.waitMessages(t, 3, 10*time.Second)[2], "victim-pass")
	if status, _, _ := login(t, app.url, "tina@example.com", "attacker-pass"); status != http.StatusUnauthorized {
		t.Errorf("the attacker's password: got %d, want 401", status)
	}
	if status, _, _ := login(t, app.url, "tina@example.com", "victim-pass"); status != http.StatusCreated {
		t.Errorf("the victim's password: got %d, want 201", status)
	}
}
