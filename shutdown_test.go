package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// slowData makes the test SMTP server take d in DATA.
func slowData(d time.Duration) func(s *testSMTP) {
	return func(s *testSMTP) {
		s.data = func(int64, *smtp.Conn) error {
			time.Sleep(d)
			return nil
		}
	}
}

// hangData makes DATA hang until the test ends.
func hangData(t *testing.T) func(s *testSMTP) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return func(s *testSMTP) {
		s.data = func(int64, *smtp.Conn) error {
			<-stop
			return tempFail
		}
	}
}

func TestShutdownWaitsForEmailInProcess(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, slowData(2*time.Second))
	dir := t.TempDir()
	p := startRun(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), nil)

	signup(t, p.url, "alice@example.com")
	p.cancel()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("run returned %v, want nil", p.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}
	if got := len(srv.messages()); got != 1 {
		t.Fatalf("SMTP server holds %d messages when run returned, want 1", got)
	}
	// The log tells the story in order: the wait, the email, the stop.
	logs, last := p.logs.String(), -1
	for _, want := range []string{"shutting down server", "completing background tasks", "email sent", "stopped server"} {
		i := strings.Index(logs, want)
		if i < 0 || i < last {
			t.Errorf("logs lack %q after the lines before it", want)
		}
		last = i
	}
	if !containsLine(p.logs.String(), "stopped server", "emails_pending=0") {
		t.Error(`no "stopped server" line with emails_pending=0`)
	}
}

func TestSignalDrainsEmail(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, slowData(time.Second))
			p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
			signup(t, p.url, "bob@example.com")
			p.signal(t, sig)
			if code := p.wait(t, 20*time.Second); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
			if got := len(srv.messages()); got != 1 {
				t.Fatalf("SMTP server holds %d messages after exit, want 1", got)
			}
			if !containsLine(p.logs.String(), "shutting down server", "signal="+sig.String()) {
				t.Errorf("no shutting down line naming %v", sig)
			}
		})
	}
}

// TestSignalDrainsResetEmail: a password reset email in flight when SIGTERM
// comes is sent before the process exits 0, like a welcome email.
// activatedThenSlow starts the binary with an SMTP server, signs address
// up and activates it (password pa55word1234), then makes every DATA take
// a second: the next email is in flight when a signal comes.
func activatedThenSlow(t *testing.T, address string) (*process, *testSMTP) {
	t.Helper()
	var slow atomic.Bool
	srv := startSMTP(t, func(s *testSMTP) {
		s.data = func(int64, *smtp.Conn) error {
			if slow.Load() {
				time.Sleep(time.Second)
			}
			return nil
		}
	})
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	signup(t, p.url, address)
	if status, body := post(t, "PUT", p.url+"/v1/users/activated", map[string]string{"token": firstToken(t, srv), "password": "pa55word1234"}); status != 200 {
		t.Fatalf("activate: %d %v", status, body)
	}
	slow.Store(true)
	return p, srv
}

func TestSignalDrainsResetEmail(t *testing.T) {
	t.Parallel()
	p, srv := activatedThenSlow(t, "reset@example.com")
	if status, _ := post(t, "POST", p.url+"/v1/tokens/password-reset", map[string]string{"email": "reset@example.com"}); status != 202 {
		t.Fatalf("reset: %d", status)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	msgs := srv.messages()
	if len(msgs) != 2 || !strings.Contains(string(msgs[1].data), "Subject: Reset your Signup password") {
		t.Fatalf("%d messages after exit; want the welcome and the reset email", len(msgs))
	}
	if !containsLine(p.logs.String(), "stopped server", "emails_pending=0") {
		t.Error(`no "stopped server" line with emails_pending=0`)
	}
}

// TestSignalDrainsPasswordChangedEmail: SIGTERM right after a password
// change; the "password changed" email is sent before exit 0.
func TestSignalDrainsPasswordChangedEmail(t *testing.T) {
	t.Parallel()
	p, srv := activatedThenSlow(t, "change@example.com")
	_, _, token := login(t, p.url, "change@example.com", "pa55word1234")
	if status, body := bearerDo(t, "PUT", p.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"}); status != 200 {
		t.Fatalf("change the password: %d %v", status, body)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	msgs := srv.messages()
	if len(msgs) != 2 || !strings.Contains(string(msgs[1].data), "Subject: Your Signup password was changed") {
		t.Fatalf("%d messages after exit; want the welcome and the password-changed email", len(msgs))
	}
	if !containsLine(p.logs.String(), "stopped server", "emails_pending=0") {
		t.Error(`no "stopped server" line with emails_pending=0`)
	}
}

func TestDeadlineExitsOneAndEmailSurvives(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hung := startSMTP(t, hangData(t))
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(hung.host, hung.port), "-shutdown-timeout", "1s")...))
	signup(t, p.url, "carol@example.com")
	waitFor(t, 10*time.Second, "the send to start", func() bool { return hung.sessions.Load() > 0 })
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t, 20*time.Second)
	took := time.Since(start)
	t.Logf("exit %d after %v with -shutdown-timeout 1s", code, took)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("exited after %v, want close to the 1s deadline", took)
	}
	if !containsLine(p.logs.String(), "shutdown deadline passed", "emails_pending=1") {
		t.Error("no log line naming the email left pending")
	}

	// The next start, with a working server, sends it.
	good := startSMTP(t, nil)
	p2 := startBinary(t, append(baseArgs(dir), smtpArgs(good.host, good.port)...))
	msgs := good.waitMessages(t, 1, 10*time.Second)
	if msgs[0].to != "carol@example.com" {
		t.Errorf("sent to %q", msgs[0].to)
	}
	if !containsLine(p2.logs.String(), "msg=outbox", "pending=1") {
		t.Error("start-up did not log the pending email")
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hung := startSMTP(t, hangData(t))
	p := startBinary(t, append(baseArgs(dir), smtpArgs(hung.host, hung.port)...)) // 30s deadline
	signup(t, p.url, "dave@example.com")
	waitFor(t, 10*time.Second, "the send to start", func() bool { return hung.sessions.Load() > 0 })
	p.signal(t, syscall.SIGINT)
	waitFor(t, 10*time.Second, "draining", func() bool { return strings.Contains(p.logs.String(), "completing background tasks") })
	start := time.Now()
	p.signal(t, syscall.SIGINT)
	code := p.wait(t, 10*time.Second)
	t.Logf("second SIGINT: exit %d after %v", code, time.Since(start))
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("exit took %v after the second signal", took)
	}
	st, err := openStore(filepath.Join(dir, "signup.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	pending, _, err := st.outboxCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pending != 1 {
		t.Errorf("%d emails pending after the forced exit, want 1", pending)
	}
}

func TestIdleShutdownIsPrompt(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t, 10*time.Second)
	took := time.Since(start)
	t.Logf("idle SIGTERM to exit: %v", took)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if took > 2*time.Second {
		t.Errorf("idle shutdown took %v", took)
	}
}

func TestBackgroundPanicDoesNotBreakShutdown(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	ran := make(chan struct{})
	app.background(func(context.Context) {
		defer close(ran)
		panic("boom")
	})
	<-ran
	_, stop := serveTestApp(t, app)
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after a panicking task", err)
	}
	if !containsLine(app.logs.String(), "background task panicked", "boom") {
		t.Error("the panic was not logged")
	}
}

// TestMain removes the binary the tests built, and stops the PostgreSQL
// server they started.
func TestMain(m *testing.M) {
	if os.Getenv("SIGNUP_BARE_SERVER") != "" {
		bareServer() // BenchmarkForwardAuth's yardstick, in a process of its own
	}
	code := m.Run()
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	if pgStop != nil {
		pgStop()
	}
	os.Exit(code)
}

// TestDrainFinishesOnlyWhatItHolds: while another process sharing the
// database keeps queueing emails, a draining process sends the emails it
// claimed and claims no more, so its shutdown ends.
func TestDrainFinishesOnlyWhatItHolds(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, slowData(20*time.Millisecond))
	dir := t.TempDir()
	p := startRun(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), nil)

	other, err := openStore(filepath.Join(dir, "signup.db")) // the other process
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	app := testComposer(t)
	other.composer = app
	stop := make(chan struct{})
	queued := make(chan struct{})
	defer func() { close(stop); <-queued }()
	go func() {
		defer close(queued)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			u := &user{CreatedAt: time.Now(), Name: "Other", Email: fmt.Sprintf("other%d@example.com", i), passwordHash: []byte("x")}
			token, _ := newToken()
			welcome, err := app.email(kindWelcome, u, token, time.Now())
			if err != nil {
				return
			}
			if _, err := other.signup(context.Background(), u, welcome); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond) // the other process's signup rate
		}
	}()
	signup(t, p.url, "kick@example.com") // its delivery finds the others' emails too
	srv.waitMessages(t, 5, 10*time.Second)
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown kept draining what another process keeps queueing")
	}
	if p.err != nil {
		t.Fatalf("run returned %v", p.err)
	}
	if containsLine(p.logs.String(), "stopped server", "emails_pending=0") {
		t.Error("the drain sent everything: the other process was not adding faster than it drained")
	}
}
