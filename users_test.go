package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
