package main

// helpers_run_test.go starts the service in the test process: startRun,
// newTestApp and serveTestApp (helpers_test.go has the table of ways).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inProcess is run() started in a goroutine.
type inProcess struct {
	url    string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error         // what run returned, once done is closed
}

// startRun starts run() with args and returns once it listens.
func startRun(t testing.TB, args []string, env map[string]string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{logs: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	getenv := func(k string) string { return env[k] }
	go func() {
		p.err = run(ctx, args, getenv, io.Discard, p.logs)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", p.logs)
		}
	})
	p.url = waitListening(t, p.logs, 10*time.Second)
	return p
}

// testApp is an application with a database in a temporary directory,
// sending to a test SMTP server, served by httptest.
type testApp struct {
	*application
	url   string
	logs  *syncBuffer
	clock atomic.Pointer[func() time.Time] // what app.now reads: setClock
}

// setClock makes now the application's clock, safely while its background
// tasks read it.
func (a *testApp) setClock(now func() time.Time) { a.clock.Store(&now) }

// newTestApp builds an application for tests that need to reach inside it
// (an injected clock, the store, the deliverer), served by httptest without
// serve()'s loops: a test starts the sweeper itself when it needs one.
// Cleanup drains background tasks with drainBackground, as shutdown does.
func newTestApp(t testing.TB, srv *testSMTP, adjust func(cfg *config)) *testApp {
	t.Helper()
	logs := &syncBuffer{}
	cfg, _, err := parseConfig(baseArgs(t.TempDir()), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.smtpHost, cfg.smtpTLS = srv.host, "none"
	fmt.Sscan(srv.port, &cfg.smtpPort)
	cfg.mailRetryMin, cfg.mailRetryMax = 10*time.Millisecond, 50*time.Millisecond
	if adjust != nil {
		adjust(&cfg)
	}
	st, err := openStore(cfg.db)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(newQuietHandler(slog.NewTextHandler(logs, nil))) // as run() makes it
	m, err := newMailer(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := embeddedTemplates(t)
	if cfg.templates != "" || len(cfg.languages) > 0 || cfg.defaultLanguage != "en" {
		if tmpl, err = loadTemplates(cfg.templates, cfg.languages, cfg.defaultLanguage); err != nil {
			t.Fatal(err)
		}
	}
	app := newApplication(cfg, logger, st, m, tmpl)
	ts := httptest.NewServer(app.routes())
	t.Cleanup(func() {
		ts.Close()
		deadline, cancel := context.WithTimeout(context.Background(), app.cfg.shutdownTimeout)
		defer cancel()
		if left := app.drainBackground(deadline); left > 0 {
			t.Errorf("%d background tasks still running at the shutdown deadline", left)
		}
		st.close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	ta := &testApp{application: app, url: ts.URL, logs: logs}
	ta.setClock(time.Now)
	app.now = func() time.Time { return (*ta.clock.Load())() }
	return ta
}

// serveTestApp serves app with the real serve() — its chores and its
// shutdown — on a port of 127.0.0.1, and returns its URL and a stop that
// cancels it and returns what serve returned. Cleanup stops it too.
func serveTestApp(t testing.TB, app *testApp) (string, func() error) {
	t.Helper()
	ln, err := listen("127.0.0.1", 0, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.serve(ctx, ln, func(string) string { return "" }) }()
	waitListening(t, app.logs, 10*time.Second)
	var result error
	stopped := false
	stop := func() error {
		if !stopped {
			cancel()
			result, stopped = <-done, true
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

// embeddedTemplates returns the embedded templates, parsed once for every
// test: they are only read, and each parse holds a few MB.
func embeddedTemplates(t testing.TB) *templates {
	t.Helper()
	tmpl, err := parsedOnce()
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

var parsedOnce = sync.OnceValues(func() (*templates, error) { return loadTemplates("", nil, "en") })

// testComposer is the composer of the default configuration, for tests
// that compose emails or drive a store by hand.
func testComposer(t testing.TB) *composer {
	t.Helper()
	cfg, _, err := parseConfig(baseArgs(t.TempDir()), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return newComposer(cfg, embeddedTemplates(t))
}

// signupWith signs u up on st, its welcome email carrying token, as
// app.signup does after the hash.
func signupWith(t testing.TB, st *store, u *user, token string) (emailKind, error) {
	t.Helper()
	if st.composer == nil {
		st.composer = testComposer(t)
	}
	welcome, err := st.composer.email(kindWelcome, u, token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return st.signup(context.Background(), u, welcome)
}
