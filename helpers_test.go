package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

// mustScan scans row into dest, failing the test on any error: a raw
// query in a test never ignores one.
func mustScan(t testing.TB, row *sql.Row, dest ...any) {
	t.Helper()
	if err := row.Scan(dest...); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log destination that tests can read while it is written.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var addrRE = regexp.MustCompile(`msg="starting server" addr=\S*:(\d+)`)

// waitListening waits for the "starting server" log line and returns the
// base URL it names.
func waitListening(t testing.TB, logs *syncBuffer, timeout time.Duration) string {
	t.Helper()
	var url string
	waitFor(t, timeout, "the server to listen", func() bool {
		m := addrRE.FindStringSubmatch(logs.String())
		if m != nil {
			url = "http://127.0.0.1:" + m[1]
		}
		return m != nil
	})
	return url
}

// smtpArgs points the service at a test SMTP server without TLS.
func smtpArgs(host, port string) []string {
	return []string{"-smtp-host", host, "-smtp-port", port, "-smtp-tls", "none"}
}

// baseArgs are the flags every test run uses: a database in dir, a free
// port, cheap hashes and no rate limit.
func baseArgs(dir string) []string {
	return []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-limiter-enabled=false", "-mail-dir", filepath.Join(dir, "mail")}
}

// How a test starts the service: a table of the ways, and when to use each.
//
//	| way | file | what runs | use it for |
//	| --- | --- | --- | --- |
//	| startRun | helpers_run_test.go | run() in a goroutine of the test process, with the flags a user would give; the real serve() and shutdown (cancel its context for the signal) | what the service does from start to stop |
//	| newTestApp | helpers_run_test.go | newApplication behind httptest: the inside view (a clock, the store, the outbox), background work driven by the test, drained at cleanup by shutdown's own drainBackground | what needs reaching into the application |
//	| serveTestApp | helpers_run_test.go | a newTestApp served by the real serve(): its chores, its outbox's start and its shutdown | faults that need both the inside view and the whole life |
//	| startBinary | helpers_binary_test.go | the built binary as a process, with real signals | what is about the process: exit codes, SIGTERM, SIGKILL, systemd |
//	| testComposer, signupWith | helpers_run_test.go | the composer alone; a store driven by hand | composing emails; the store's own tests |
//
// And what the service talks to: startSMTP (helpers_smtp_test.go), a real
// go-smtp server on 127.0.0.1:0 that records what it accepts (and can
// refuse, stall or hang); postgresURL (store_postgres_test.go), a
// throwaway PostgreSQL server; startReceiver (webhooks_test.go), a webhook
// receiver; browser (pages_test.go), headless Chromium.
// do sends a raw body and returns the response and its decoded JSON.
func do(t testing.TB, method, url, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, url, raw)
	}
	return res, out
}

// post sends body as JSON and returns the status and decoded JSON answer.
func post(t testing.TB, method, url string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	res, out := do(t, method, url, string(b))
	return res.StatusCode, out
}

// signup registers address and fails the test unless it is answered 202.
func signup(t testing.TB, url, address string) {
	t.Helper()
	status, body := post(t, "POST", url+"/v1/users", map[string]string{"name": "Test User", "email": address, "password": "pa55word1234"})
	if status != http.StatusAccepted {
		t.Fatalf("signup %s: status %d, body %v", address, status, body)
	}
}

// linkRE matches a link with a token on a line of its own.
var linkRE = regexp.MustCompile(`(?m)^(https?://\S+/(?:activate|reset-password|confirm-email|undo-email)\?token=([A-Z2-7]{26}))\r?$`)

// firstToken waits for the first message at srv and returns its token.
func firstToken(t testing.TB, srv *testSMTP) string {
	t.Helper()
	return tokenOf(t, srv.waitMessages(t, 1, 10*time.Second)[0].data)
}

// tokenOf reads the token out of the link in a message's plain part.
func tokenOf(t testing.TB, msg []byte) string {
	t.Helper()
	_, token := linkOf(t, msg)
	return token
}

// linkOf returns the link with a token on a line of its own in a message's
// plain part, and the token.
func linkOf(t testing.TB, msg []byte) (link, token string) {
	t.Helper()
	plain, _ := parts(t, msg)
	m := linkRE.FindStringSubmatch(plain)
	if m == nil {
		t.Fatalf("no line with a link and token in the plain part:\n%s", plain)
	}
	return m[1], m[2]
}

// parts decodes a multipart/alternative message into its plain and HTML bodies.
func parts(t testing.TB, msg []byte) (plain, html string) {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p.Body)
		ct, _, _ := p.Header.(*mail.InlineHeader).ContentType()
		switch ct {
		case "text/plain":
			plain = string(body)
		case "text/html":
			html = string(body)
		}
	}
	return plain, html
}

// containsLine reports whether logs have a line with all of the parts.
func containsLine(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// recordWaits makes app record, instead of sleeping, each wait it would
// make in place of a password hash, and returns what it has recorded so far.
func recordWaits(app *application) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	app.hasher.wait = func(_ context.Context, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}

// notEmailed returns the addresses of accepted that srv has no email for.
func notEmailed(srv *testSMTP, accepted []string) []string {
	got := map[string]bool{}
	for _, m := range srv.messages() {
		got[m.to] = true
	}
	var missing []string
	for _, address := range accepted {
		if !got[address] {
			missing = append(missing, address)
		}
	}
	return missing
}

// mustToken is a new token, for a test that needs one and not its hash.
func mustToken() string {
	token, _ := newToken()
	return token
}
