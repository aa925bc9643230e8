package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is one message a test SMTP server accepted.
type received struct {
	from, to string
	data     []byte
	user     string // AUTH user, if any
	session  int64  // which connection carried it, from 1
	helo     string // the name the client gave in EHLO
}

// testSMTP is a real go-smtp server on 127.0.0.1:0 that records what it
// accepts. Its data hook can delay, fail or drop a message.
type testSMTP struct {
	server   *smtp.Server
	addr     string
	host     string
	port     string
	sessions atomic.Int64

	// data, if set, runs for each DATA before the message is accepted; n
	// counts DATA commands from 1. A non-nil error is the reply.
	data func(n int64, c *smtp.Conn) error
	// mail, if set, runs for each MAIL FROM; n counts them from 1.
	mail func(n int64) error
	// rcpt, if set, runs for each RCPT TO; n counts them from 1.
	rcpt func(n int64) error
	// rcptTo, if set, runs for each RCPT TO with its address.
	rcptTo func(to string) error
	// auth, if set, is required: the PLAIN password it accepts for "user".
	auth string
	// loginOnly offers AUTH LOGIN instead of PLAIN.
	loginOnly bool
	// tls, if set, offers STARTTLS; AUTH is then refused before it.
	tls *tls.Config

	mu      sync.Mutex
	msgs    []received
	dataN   int64
	mailN   int64
	rcptN   int64
	arrived chan struct{} // a message was accepted
}

// startSMTP starts a test SMTP server; configure fields before the first
// connection by passing a setup function.
func startSMTP(t testing.TB, setup func(s *testSMTP)) *testSMTP {
	t.Helper()
	s := &testSMTP{arrived: make(chan struct{}, 100000)}
	if setup != nil {
		setup(s)
	}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0) // dropped connections are the point of some tests
	srv.TLSConfig = s.tls
	srv.AllowInsecureAuth = s.tls == nil
	s.server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.host, s.port, _ = net.SplitHostPort(s.addr)
	go srv.Serve(ehloListener{ln})
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *testSMTP) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &testSMTPMail{srv: s, conn: c, id: s.sessions.Add(1), helo: c.Hostname()}, nil
}

// ehloListener counts the EHLO and HELO commands of each connection it
// accepts (before TLS, if any), so the test server can act like OpenSMTPD.
type ehloListener struct{ net.Listener }

func (l ehloListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ehloConn{Conn: c}, nil
}

type ehloConn struct {
	net.Conn
	line  []byte // the start of the line being read
	ehlos atomic.Int64
}

func (c *ehloConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	for _, ch := range b[:n] {
		if len(c.line) < 5 {
			c.line = append(c.line, ch)
			if cmd := strings.ToUpper(string(c.line)); cmd == "EHLO " || cmd == "HELO " {
				c.ehlos.Add(1)
			}
		}
		if ch == '\n' {
			c.line = c.line[:0]
		}
	}
	return n, err
}

// messages returns a copy of what the server accepted.
func (s *testSMTP) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// waitMessages waits until the server has accepted at least n messages.
func (s *testSMTP) waitMessages(t testing.TB, n int, timeout time.Duration) []received {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d messages at the SMTP server", n), func() bool { return len(s.messages()) >= n })
	return s.messages()
}

type testSMTPMail struct {
	srv      *testSMTP
	conn     *smtp.Conn
	id       int64
	helo     string
	from, to string
	user     string
}

func (s *testSMTPMail) AuthMechanisms() []string {
	switch {
	case s.srv.auth == "":
		return nil
	case s.srv.loginOnly:
		return []string{sasl.Login}
	}
	return []string{sasl.Plain}
}

func (s *testSMTPMail) Auth(mech string) (sasl.Server, error) {
	check := func(username, password string) error {
		if username != "user" || password != s.srv.auth {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.user = username
		return nil
	}
	if mech == sasl.Login {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, username, password string) error { return check(username, password) }), nil
}

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks: the
// user name comes as the initial response, the password after "Password:".
type loginServer struct {
	check    func(username, password string) error
	username string
	asked    bool
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	if !l.asked {
		l.username, l.asked = string(response), true
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.username, string(response))
}

func (s *testSMTPMail) Mail(from string, _ *smtp.MailOptions) error {
	// OpenSMTPD answers a second EHLO with 503, and the client's next
	// command finds it has not said hello: the same failure, one step on.
	if c, ok := s.conn.Conn().(*ehloConn); ok && c.ehlos.Load() > 1 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Invalid command: Already identified"}
	}
	if s.srv.auth != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.srv.mu.Lock()
	s.srv.mailN++
	n := s.srv.mailN
	s.srv.mu.Unlock()
	if s.srv.mail != nil {
		if err := s.srv.mail(n); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}

func (s *testSMTPMail) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.srv.mu.Lock()
	s.srv.rcptN++
	n := s.srv.rcptN
	s.srv.mu.Unlock()
	if s.srv.rcpt != nil {
		if err := s.srv.rcpt(n); err != nil {
			return err
		}
	}
	if s.srv.rcptTo != nil {
		if err := s.srv.rcptTo(to); err != nil {
			return err
		}
	}
	s.to = to
	return nil
}

func (s *testSMTPMail) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	s.srv.dataN++
	n := s.srv.dataN
	s.srv.mu.Unlock()
	if s.srv.data != nil {
		if err := s.srv.data(n, s.conn); err != nil {
			return err
		}
	}
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, received{from: s.from, to: s.to, data: data, user: s.user, session: s.id, helo: s.helo})
	s.srv.mu.Unlock()
	s.srv.arrived <- struct{}{}
	return nil
}

func (s *testSMTPMail) Reset()        { s.from, s.to = "", "" }
func (s *testSMTPMail) Logout() error { return nil }

// tempFail is a 451 reply, a temporary failure.
var tempFail = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}

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

// How a test starts the service. There are two ways, one per question:
//
//   - In this process, startRun: run() with the flags a user would give,
//     in a goroutine, with the real serve() and shutdown sequence (cancel
//     its context for the signal). Use it for what the service does from
//     start to stop. newTestApp is its inside view, for tests that must
//     reach into the application (a clock, the store, the deliverer) and
//     drive the background work themselves: the same wiring
//     (newApplication) behind httptest, stopped at cleanup by shutdown's
//     own drainBackground. serveTestApp serves such an application with
//     the real serve() — its chores and its shutdown — for the tests of
//     faults that need both the inside view and the whole life.
//   - As a process, startBinary: the built binary with real signals, for
//     what is about the process (exit codes, SIGTERM, SIGKILL, systemd).

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
var linkRE = regexp.MustCompile(`(?m)^(https?://\S+/(?:activate|reset-password|confirm-email)\?token=([A-Z2-7]{26}))\r?$`)

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
	logger := slog.New(slog.NewTextHandler(logs, nil))
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

// binary is the signup binary built once for the tests that need a real
// process and real signals.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "signup-test")
	if err != nil {
		return "", err
	}
	binaryDir = dir
	bin := filepath.Join(dir, "signup")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// binaryDir holds the built binary, removed by TestMain.
var binaryDir string

// process is the real binary, running.
type process struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{}
	err  error // after done
}

// startBinary runs the signup binary with args and waits until it listens.
func startBinary(t testing.TB, args []string, env ...string) *process {
	t.Helper()
	p := startBinaryNoWait(t, args, env...)
	p.url = waitListening(t, p.logs, 20*time.Second)
	return p
}

func startBinaryNoWait(t testing.TB, args []string, env ...string) *process {
	t.Helper()
	cmd := exec.Command(builtBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// builtBinary returns the path of the signup binary, building it once.
func builtBinary(t testing.TB) string {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startCmd starts cmd, a signup process, collecting its output.
func startCmd(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	args := cmd.Args
	p := &process{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("logs of %v:\n%s", args, p.logs)
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// signal sends sig to the process.
func (p *process) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
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
