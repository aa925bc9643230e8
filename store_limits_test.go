package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

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
