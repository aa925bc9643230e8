package main

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"golang.org/x/crypto/bcrypt"
)

// TestCrashesLoseNoEmail signs users up (or asks for password resets, or
// address changes, of activated accounts) against a flaky SMTP server while
// killing the process with SIGKILL at random moments, then restarts it:
// every request that was ever accepted must have its email.
func TestCrashesLoseNoEmail(t *testing.T) {
	t.Parallel()
	t.Run("welcome", func(t *testing.T) { t.Parallel(); testCrashes(t, "/v1/users", "Activate your Signup account") })
	t.Run("password reset", func(t *testing.T) {
		t.Parallel()
		testCrashes(t, "/v1/tokens/password-reset", "Reset your Signup password")
	})
	t.Run("address change", func(t *testing.T) {
		t.Parallel()
		testCrashes(t, "/v1/users/me/email", "Confirm the new email address")
	})
}

// crashPassword is the password of the accounts the crash tests write.
const crashPassword = "pa55word1234"

// crashBearer is the bearer token the crash tests give the account of
// address: 26 base32 characters.
func crashBearer(address string) string {
	sum := sha256.Sum256([]byte(address))
	return base32.StdEncoding.EncodeToString(sum[:])[:26]
}

func testCrashes(t *testing.T, path, subject string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var rngMu sync.Mutex
	srv := startSMTP(t, func(s *testSMTP) {
		s.data = func(n int64, c *smtp.Conn) error {
			rngMu.Lock()
			r := rng.IntN(10)
			rngMu.Unlock()
			switch r {
			case 0, 1:
				return tempFail
			case 2:
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "closing"}
			case 3:
				c.Conn().Close()
				return tempFail
			}
			return nil
		}
	})
	dir := t.TempDir()
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	args = append(args, "-mail-retry-min", "10ms", "-mail-retry-max", "200ms")
	const resetAccounts = 5000
	if path != "/v1/users" {
		// Activated accounts, written straight into the database, each with
		// a bearer token named after its address.
		st, err := openStore(filepath.Join(dir, "signup.db"))
		if err != nil {
			t.Fatal(err)
		}
		hash, _ := bcrypt.GenerateFromPassword([]byte(crashPassword), bcrypt.MinCost)
		tx, _ := st.write.Begin()
		for i := range resetAccounts {
			address := fmt.Sprintf("crash%d@example.com", i)
			if _, err := tx.Exec(`INSERT INTO users (id, created_at, name, email, email_key, password_hash, activated) VALUES (?, ?, 'Crash', ?, ?, ?, 1)`,
				i+1, millis(time.Now()), address, address, hash); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(`INSERT INTO tokens (hash, user_id, scope, expiry, session_id) VALUES (?, ?, 'authentication', ?, ?)`,
				hashToken(crashBearer(address)), i+1, millis(time.Now().Add(time.Hour)), fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		st.close()
	}

	accepted := map[string]bool{}
	var unsure []string // the answer was lost
	next := 0
	client := &http.Client{Timeout: 5 * time.Second}
	try := func(url, address string) (ok, answered bool) {
		body := fmt.Sprintf(`{"name": "Crash", "email": %q, "password": "pa55word"}`, address)
		switch path {
		case "/v1/tokens/password-reset":
			body = fmt.Sprintf(`{"email": %q}`, address)
		case "/v1/users/me/email":
			body = fmt.Sprintf(`{"email": %q, "current_password": %q}`, "new."+address, crashPassword)
		}
		req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+crashBearer(address))
		res, err := client.Do(req)
		if err != nil {
			return false, false
		}
		res.Body.Close()
		return res.StatusCode == 202, true
	}

	const rounds = 6
	for round := range rounds {
		p := startBinary(t, args)
		rngMu.Lock()
		killAfter := time.Duration(50+rng.IntN(400)) * time.Millisecond
		rngMu.Unlock()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if next == resetAccounts {
					<-stop
					return
				}
				address := fmt.Sprintf("crash%d@example.com", next)
				next++
				ok, answered := try(p.url, address)
				switch {
				case !answered:
					unsure = append(unsure, address)
				case ok:
					accepted[address] = true
				}
			}
		}()
		time.Sleep(killAfter) // the random moment of the crash is the point here
		p.signal(t, syscall.SIGKILL)
		p.wait(t, 10*time.Second)
		close(stop)
		<-done
		t.Logf("round %d: killed after %v; %d accepted so far, %d unsure", round, killAfter, len(accepted), len(unsure))
	}

	p := startBinary(t, args)
	for _, address := range unsure {
		if ok, _ := try(p.url, address); !ok {
			t.Fatalf("retrying %s after the crashes failed", address)
		}
		accepted[address] = true
	}
	if len(accepted) < 10 {
		t.Fatalf("only %d signups accepted: the test proved little", len(accepted))
	}
	got := map[string]int{}
	waitFor(t, 60*time.Second, "an email for every accepted signup", func() bool {
		clear(got)
		for _, m := range srv.messages() {
			if strings.Contains(string(m.data), "Subject: "+subject) {
				got[m.to]++
			}
		}
		for address := range accepted {
			if got[address] == 0 || (path == "/v1/users/me/email" && got["new."+address] == 0) {
				return false
			}
		}
		return true
	})
	duplicates := 0
	for _, n := range got {
		duplicates += n - 1
	}
	t.Logf("%d requests accepted across %d SIGKILLs, all emailed; %d duplicate emails", len(accepted), rounds, duplicates)
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("final shutdown exit %d", code)
	}
}

// BenchmarkOutboxDrain sends a backlog of 10,000 pending emails to a local
// go-smtp server and reports emails per second and SMTP sessions used.
func BenchmarkOutboxDrain(b *testing.B) {
	const n = 10000
	var sessions int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, app := benchApp(b)
		queueEmails(b, app, n)
		b.StartTimer()
		start := time.Now()
		app.outbox.emails.kick()
		for range n {
			<-srv.arrived
		}
		elapsed += time.Since(start)
		b.StopTimer()
		waitDrained(b, app)
		sessions += srv.sessions.Load()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "emails/s")
	b.ReportMetric(float64(sessions)/float64(b.N), "sessions")
	b.ReportMetric(0, "ns/op")
}

// benchApp is a test application sending to a fresh local SMTP server.
func benchApp(b *testing.B) (*testSMTP, *application) {
	srv := startSMTP(b, nil)
	return srv, newTestApp(b, srv, nil).application
}

// waitDrained waits until the outbox has nothing pending.
func waitDrained(t testing.TB, app *application) {
	waitFor(t, time.Minute, "the outbox to drain", func() bool {
		pending, _, _ := app.store.outboxCounts(context.Background())
		return pending == 0
	})
}

// TestOutboxListAndRetry: an email refused for good shows in `outbox list`;
// `outbox retry -failed`, run beside the serving process, composes it afresh
// and the service sends it within seconds, with a token that works.
func TestOutboxListAndRetry(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	refuse.Store(true)
	srv := startSMTP(t, func(s *testSMTP) {
		s.rcpt = func(int64) error {
			if refuse.Load() {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	})
	dir := t.TempDir()
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	// The service has its own base URL and name; the command is run as
	// the README shows, with the database alone.
	p := startBinary(t, append(args, "-base-url", "https://signup.example.test", "-app-name", "Acme Rockets"))
	signup(t, p.url, "retry@example.com")
	outbox := func(sub ...string) string {
		t.Helper()
		out, err := exec.Command(builtBinary(t), append([]string{"-db", filepath.Join(dir, "signup.db")}, append([]string{"outbox"}, sub...)...)...).Output()
		if err != nil {
			t.Fatalf("outbox %v: %v\n%s", sub, err, out)
		}
		return string(out)
	}
	var entry outboxEntry
	waitFor(t, 10*time.Second, "the email to fail", func() bool {
		out := outbox("list", "-status", "failed", "-json")
		return out != "" && json.Unmarshal([]byte(out), &entry) == nil
	})
	if entry.Recipient != "retry@example.com" || entry.Kind != "welcome" || entry.Attempts != 1 || !strings.Contains(entry.LastError, "5.1.1") {
		t.Errorf("failed entry %+v", entry)
	}

	refuse.Store(false)
	if out := outbox("retry", "-failed"); !strings.Contains(out, fmt.Sprintf("email %d to retry@example.com queued again", entry.ID)) {
		t.Errorf("retry said %q", out)
	}
	msg := srv.waitMessages(t, 1, 10*time.Second)[0]
	if link, _ := linkOf(t, msg.data); !strings.HasPrefix(link, "https://signup.example.test/activate?token=") || !strings.Contains(string(msg.data), "Acme Rockets") {
		t.Errorf("the retried email: got link %s, want the service's own base URL and name", link)
	}
	status, body := post(t, "PUT", p.url+"/v1/users/activated", map[string]string{"token": tokenOf(t, msg.data), "password": "pa55word1234"})
	if status != http.StatusOK {
		t.Errorf("the retried email's token: %d %v", status, body)
	}
	table := outbox("list")
	if !strings.HasPrefix(table, "ID  KIND") || !containsLine(table, "welcome", "sent", "retry@example.com") {
		t.Errorf("outbox list:\n%s", table)
	}
}

// TestRestoredWithoutKey: a database restored without its .key file (on
// another machine, say) cannot open its pending messages; they are composed
// afresh with new links, which work.
func TestRestoredWithoutKey(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	srv := startSMTP(t, func(s *testSMTP) {
		s.data = func(int64, *smtp.Conn) error {
			if down.Load() {
				return tempFail
			}
			return nil
		}
	})
	dir := t.TempDir()
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	p := startBinary(t, args)
	signup(t, p.url, "restored@example.com")
	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return containsLine(p.logs.String(), "will retry") })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if err := os.Remove(filepath.Join(dir, "signup.db.key")); err != nil {
		t.Fatal(err)
	}

	down.Store(false)
	p = startBinary(t, args)
	msg := srv.waitMessages(t, 1, 10*time.Second)[0]
	if status, body := post(t, "PUT", p.url+"/v1/users/activated", map[string]string{"token": tokenOf(t, msg.data), "password": "pa55word1234"}); status != 200 {
		t.Errorf("the new link: %d %v", status, body)
	}
	if !containsLine(p.logs.String(), "level=WARN", "composed afresh") {
		t.Error("no WARN line about the email composed afresh")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	min, max := 2*time.Second, 10*time.Minute
	for attempt := 1; attempt <= 100; attempt++ {
		for range 20 {
			d := backoff(attempt, min, max)
			if d < min || d > max {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, min, max)
			}
			if attempt <= 8 {
				ceiling := min << (attempt - 1)
				if d > ceiling || d < ceiling/2 && ceiling/2 >= min {
					t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
				}
			}
		}
	}
	if d := backoff(30, min, max); d < max/2 {
		t.Errorf("attempt 30: %v, want near the %v cap", d, max)
	}
}

func TestGivesUpAfter72Hours(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, func(s *testSMTP) { s.data = func(int64, *smtp.Conn) error { return tempFail } })
	app := newTestApp(t, srv, nil)
	clock := newClock(time.Now())
	app.setClock(clock.now)
	app.background(app.outbox.emails.sweep)
	signup(t, app.url, "late@example.com")
	waitFor(t, 10*time.Second, "a first failure", func() bool { return containsLine(app.logs.String(), "will retry") })
	clock.add(giveUpAfter)
	waitFor(t, 10*time.Second, "the email to be given up", func() bool {
		_, failed, _ := app.store.outboxCounts(context.Background())
		return failed == 1
	})
	if !containsLine(app.logs.String(), "level=ERROR", "given up after 72h") {
		t.Error("giving up was not logged as an error")
	}
}

func TestBacklogReusesSessions(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	const n = 200
	queueEmails(t, app.application, n)
	app.background(app.outbox.emails.sweep)
	srv.waitMessages(t, n, 20*time.Second)
	sessions := srv.sessions.Load()
	t.Logf("%d emails over %d SMTP sessions", n, sessions)
	if sessions > n/maxPerConn+maxConnsOut*2 {
		t.Errorf("%d sessions for %d emails", sessions, n)
	}
}

func TestClaimedEmailSentOnce(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	const n = 300
	queueEmails(t, app.application, n)
	// Many deliverers at once, each claiming and sending.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { app.outbox.emails.sendDue(context.Background(), false) })
	}
	wg.Wait()
	waitDrained(t, app.application) // deliverers kicked by a full batch, too
	msgs := srv.messages()
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.to]++
	}
	if len(msgs) != n || len(seen) != n {
		t.Errorf("%d messages to %d addresses, want %d each once", len(msgs), len(seen), n)
	}
}

// TestOutboxListHidesWebhookPassword: `signup outbox list` shows a webhook
// URL with its password as xxxxx.
func TestOutboxListHidesWebhookPassword(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "signup.db")
	st, err := openStore(db)
	if err != nil {
		t.Fatal(err)
	}
	st.composer = testComposer(t)
	st.composer.webhookURL = "https://hooks:s3cret-pass@app.example/hooks"
	tx, _ := st.write.Begin()
	ev, _ := st.composer.event(eventCreated, &user{ID: 1, Email: "ada@example.com"}, time.Now())
	if err := st.queue(context.Background(), tx, ev); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	st.close()
	for _, args := range [][]string{{"outbox", "list"}, {"outbox", "list", "-json"}} {
		var out strings.Builder
		if err := run(context.Background(), append([]string{"-db", db}, args...), func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "hooks:xxxxx@app.example") {
			t.Errorf("%v shows:\n%s", args, out.String())
		}
	}
}
