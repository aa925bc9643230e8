package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRecentActivity: what happens to an account is recorded in the
// transaction of the change, on both engines, and the account page shows
// it in the person's language, with the client's address and browser of
// each login — to the person alone.
func TestRecentActivity(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, nil)
			app := newTestApp(t, srv, func(cfg *config) { cfg.db = newDB(t) })
			bearer := activatedAccount(t, app, srv, "ada@example.com")
			login(t, app.url, "ada@example.com", "wrong-password")
			login(t, app.url, "nobody@example.com", "wrong-password") // no account: nothing to record
			bearerDo(t, "PUT", app.url+"/v1/users/me/password", bearer, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"})

			v := newVisitor(t, app.url)
			req, _ := http.NewRequest("POST", app.url+"/login", strings.NewReader(url.Values{"email": {"ada@example.com"}, "password": {"new-password-1"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
			if a := v.do(req); a.status != http.StatusSeeOther {
				t.Fatalf("login: %d", a.status)
			}

			var kinds []string
			u, _ := userByAddress(context.Background(), app.store.read, "ada@example.com")
			list, err := app.store.activity(context.Background(), u.ID, maxActivityShown)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range list {
				kinds = append(kinds, string(e.Kind))
			}
			if got, want := strings.Join(kinds, " "), "login password_changed login_failed login activated signup"; got != want {
				t.Errorf("activity, newest first: %s, want %s", got, want)
			}
			var orphans int
			mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM activity WHERE user_id <> $1`, u.ID), &orphans)
			if orphans != 0 {
				t.Errorf("%d entries about other accounts", orphans)
			}

			page := v.get("/account").body
			for _, want := range []string{"Recent activity", "Logged in (Firefox on Linux), from 127.0.0.1", "A wrong password was typed", "Password changed", "Signed up"} {
				if !strings.Contains(page, want) {
					t.Errorf("the account page lacks %q", want)
				}
			}
			req, _ = http.NewRequest("GET", app.url+"/account", nil)
			req.Header.Set("Accept-Language", "de")
			if page := v.do(req).body; !strings.Contains(page, "Letzte Aktivitäten") || !strings.Contains(page, "Angemeldet (Firefox") {
				t.Errorf("the account page in German lacks its activity in German")
			}
		})
	}
}

// TestActivityRetention: entries older than -activity-retention are
// purged by the housekeeping chore; newer ones stay.
func TestActivityRetention(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.activityRetention = 48 * time.Hour })
	activatedAccount(t, app, srv, "ada@example.com")
	u, _ := userByAddress(context.Background(), app.store.read, "ada@example.com")
	old := app.now().Add(-49 * time.Hour)
	if err := recordActivity(context.Background(), app.store.write, u.ID, activityLogin, old, "192.0.2.1", "old"); err != nil {
		t.Fatal(err)
	}
	app.housekeeping() // its first run purges at once
	list, _ := app.store.activity(context.Background(), u.ID, maxActivityShown)
	for _, e := range list {
		if e.At.Before(app.now().Add(-48 * time.Hour)) {
			t.Errorf("an entry of %v outlived the retention", e.At)
		}
	}
	if len(list) != 3 { // signup, activated, login
		t.Errorf("%d entries left, want the 3 newer ones", len(list))
	}
}
