package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

func TestUserInputCannotReachHeaders(t *testing.T) {
	t.Parallel()
	u := &user{ID: 7, Name: "Eve\r\nBcc: mallory@evil.example\r\nSubject: pwned", Email: "eve@example.com"}
	e, err := testComposer(t).email(kindWelcome, u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := mail.CreateReader(bytes.NewReader(e.Message))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for f := r.Header.Fields(); f.Next(); {
		keys = append(keys, strings.ToLower(f.Key()))
	}
	slices.Sort(keys)
	want := []string{"auto-submitted", "content-type", "date", "from", "message-id", "mime-version", "subject", "to"}
	if !slices.Equal(keys, want) {
		t.Errorf("header fields %v, want %v", keys, want)
	}
	if subject, _ := r.Header.Subject(); subject != "Activate your Signup account" {
		t.Errorf("Subject %q", subject)
	}
	if v := r.Header.Get("Auto-Submitted"); v != "auto-generated" {
		t.Errorf("Auto-Submitted %q", v)
	}
	if to, _ := r.Header.AddressList("To"); len(to) != 1 || to[0].Address != "eve@example.com" || to[0].Name != "" {
		t.Errorf("To %v", to)
	}
	if id, _ := r.Header.MessageID(); "<"+id+">" != e.MessageID {
		t.Errorf("Message-ID header %q, outbox row %q", id, e.MessageID)
	}
	plain, html := parts(t, e.Message)
	if link, _ := linkOf(t, e.Message); !strings.Contains(html, `href="`+link+`"`) {
		t.Errorf("the HTML part lacks a link to %s:\n%s", link, html)
	}
	if !strings.Contains(plain, "Hi Eve") {
		t.Error("the plain part lacks the name")
	}

	// Through the API the same name and address are refused, and an HTML
	// name is escaped in the HTML part.
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	for _, body := range []map[string]string{
		{"name": "Eve\r\nBcc: mallory@evil.example", "email": "eve@example.com", "password": "pa55word"},
		{"name": "Eve", "email": "eve@example.com\r\nBcc: mallory@evil.example", "password": "pa55word"},
		{"name": "Eve", "email": "Eve <eve@example.com>", "password": "pa55word"},
	} {
		if status, _ := post(t, "POST", app.url+"/v1/users", body); status != 422 {
			t.Errorf("%q: status %d, want 422", body, status)
		}
	}
	signup := map[string]string{"name": "<b>Eve</b>", "email": "eve@example.com", "password": "pa55word"}
	if status, body := post(t, "POST", app.url+"/v1/users", signup); status != 202 {
		t.Fatalf("status %d %v", status, body)
	}
	msg := srv.waitMessages(t, 1, 10*time.Second)[0]
	if _, html := parts(t, msg.data); strings.Contains(html, "<b>Eve</b>") || !strings.Contains(html, "&lt;b&gt;Eve&lt;/b&gt;") {
		t.Errorf("the name is not escaped in the HTML part:\n%s", html)
	}
}

// selfSigned returns a TLS certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test smtp"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestStartTLSAndAuthPlain(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	srv := startSMTP(t, func(s *testSMTP) {
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.auth = "s3cret"
	})
	tlsOn := func(cfg *config) {
		cfg.smtpTLS, cfg.smtpUsername, cfg.smtpPassword = "starttls", "user", "s3cret"
	}

	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		app := newTestApp(t, srv, tlsOn)
		app.outbox.emails.sender.(*mailer).rootCAs = pool
		signup(t, app.url, "tls@example.com")
		waitFor(t, 10*time.Second, "the message", func() bool {
			return slices.ContainsFunc(srv.messages(), func(m received) bool { return m.to == "tls@example.com" })
		})
		for _, m := range srv.messages() {
			if m.to == "tls@example.com" && m.user != "user" {
				t.Errorf("sent without AUTH (user %q)", m.user)
			}
		}
		if strings.Contains(app.logs.String(), "s3cret") {
			t.Error("the password appears in the logs")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		t.Parallel()
		app := newTestApp(t, srv, tlsOn) // system roots: the self-signed certificate fails verification
		signup(t, app.url, "untrusted@example.com")
		waitFor(t, 10*time.Second, "a failed attempt", func() bool {
			return containsLine(app.logs.String(), "will retry", "certificate", "SSL_CERT_FILE")
		})
		if slices.ContainsFunc(srv.messages(), func(m received) bool { return m.to == "untrusted@example.com" }) {
			t.Error("sent over an unverified connection")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		app := newTestApp(t, srv, func(cfg *config) { tlsOn(cfg); cfg.smtpPassword = "wrong" })
		app.outbox.emails.sender.(*mailer).rootCAs = pool
		signup(t, app.url, "wrongpw@example.com")
		waitFor(t, 10*time.Second, "the login error", func() bool {
			return containsLine(app.logs.String(), "level=ERROR", "rejected the login", "smtp_code=535")
		})
		waitFor(t, 10*time.Second, "a retry", func() bool {
			return containsLine(app.logs.String(), "will retry", "message_id")
		})
		if strings.Contains(app.logs.String(), "wrong") && !strings.Contains(app.logs.String(), "wrongpw@") {
			t.Error("the password appears in the logs")
		}
		pending, failed, _ := app.store.outboxCounts(context.Background())
		if pending != 1 || failed != 0 {
			t.Errorf("after a rejected login: %d pending, %d failed; want 1 pending", pending, failed)
		}
	})
}

func TestAuthLoginWhenPlainIsNotOffered(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, func(s *testSMTP) { s.auth, s.loginOnly = "s3cret", true })
	app := newTestApp(t, srv, func(cfg *config) { cfg.smtpUsername, cfg.smtpPassword = "user", "s3cret" })
	signup(t, app.url, "login@example.com")
	if m := srv.waitMessages(t, 1, 10*time.Second)[0]; m.user != "user" {
		t.Errorf("sent without AUTH LOGIN (user %q)", m.user)
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	srv := startSMTP(t, nil)
	// Put TLS in front of the test server: -smtp-tls tls.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", srv.addr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { copyConn(up, c) }()
				copyConn(c, up)
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.smtpTLS, cfg.smtpHost = "tls", host
		fmt.Sscan(port, &cfg.smtpPort)
	})
	app.outbox.emails.sender.(*mailer).rootCAs = pool
	signup(t, app.url, "implicit@example.com")
	srv.waitMessages(t, 1, 10*time.Second)
}

func copyConn(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

func TestRetryClassification(t *testing.T) {
	t.Parallel()
	reply := func(code int, enhanced smtp.EnhancedCode, msg string) func() error {
		return func() error { return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: msg} }
	}
	bare := smtp.NoEnhancedCode
	tests := []struct {
		name       string
		rcpt, data func() error // the first reply to RCPT or DATA
		wantFailed bool
	}{
		{name: "451 is retried", data: func() error { return tempFail }},
		{name: "421 is retried", data: reply(421, smtp.EnhancedCode{4, 4, 2}, "closing")},
		{name: "quota 550 5.4.5 is retried", data: reply(550, smtp.EnhancedCode{5, 4, 5}, "Daily sending quota exceeded")},
		{name: "mailbox full 552 5.2.2 is retried", data: reply(552, smtp.EnhancedCode{5, 2, 2}, "mailbox full")},
		{name: "policy 550 5.7.1 to RCPT is retried", rcpt: reply(550, smtp.EnhancedCode{5, 7, 1}, "relaying denied")},
		{name: "server trouble 554 5.0.0 is retried", data: func() error { return fmt.Errorf("boom") }},
		{name: "bare 550 to DATA is retried", data: reply(550, bare, "rejected")},
		{name: "5.1.1 to RCPT fails", rcpt: reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"), wantFailed: true},
		{name: "5.1.1 to DATA fails", data: reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"), wantFailed: true},
		{name: "bare 550 to RCPT fails", rcpt: reply(550, bare, "no such user"), wantFailed: true},
		{name: "bare 551 to RCPT fails", rcpt: reply(551, bare, "user not local"), wantFailed: true},
		{name: "bare 553 to RCPT fails", rcpt: reply(553, bare, "mailbox name not allowed"), wantFailed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, func(s *testSMTP) {
				if tt.data != nil {
					s.data = func(n int64, c *smtp.Conn) error {
						if n == 1 {
							return tt.data()
						}
						return nil
					}
				}
				if tt.rcpt != nil {
					s.rcpt = func(n int64) error {
						if n == 1 {
							return tt.rcpt()
						}
						return nil
					}
				}
			})
			app := newTestApp(t, srv, nil) // retries after 10-50ms
			app.background(app.outbox.emails.sweep)
			signup(t, app.url, "x@example.com")
			if tt.wantFailed {
				waitFor(t, 10*time.Second, "the failure", func() bool {
					_, failed, _ := app.store.outboxCounts(context.Background())
					return failed == 1
				})
				if !containsLine(app.logs.String(), "email rejected for good", "smtp_code=5") {
					t.Error("the permanent failure was not logged with its code")
				}
				// No retry follows: nothing is left due.
				if _, due, err := app.store.nextDue(context.Background(), "email"); err != nil || due {
					t.Errorf("after a permanent failure: got a retry scheduled (%v), want none", err)
				}
				if got := srv.messages(); len(got) != 0 {
					t.Errorf("a permanently failed email was sent %d times", len(got))
				}
				var attempts int
				var message []byte
				mustScan(t, app.store.read.QueryRow(`SELECT attempts, message FROM outbox`), &attempts, &message)
				if attempts != 1 || message != nil {
					t.Errorf("failed row: attempts %d, message kept %v", attempts, message != nil)
				}
				return
			}
			msgs := srv.waitMessages(t, 1, 10*time.Second)
			if len(msgs) != 1 {
				t.Errorf("%d messages", len(msgs))
			}
			if !containsLine(app.logs.String(), "will retry", "attempt=1") {
				t.Error("the temporary failure was not logged")
			}
			waitFor(t, 10*time.Second, "the log of the second attempt succeeding", func() bool {
				return containsLine(app.logs.String(), "email sent", "attempt=2")
			})
		})
	}
}

// TestSessionsRealServersTake checks the SMTP dialogue against a server that
// acts like OpenSMTPD (a second EHLO on a connection is refused) and records
// the EHLO name and the messages of each connection: one EHLO per
// connection, the -smtp-helo name, at most 10 messages per connection, and
// after a refused recipient a new connection rather than RSET.
func TestSessionsRealServersTake(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, func(s *testSMTP) {
		s.rcpt = func(n int64) error {
			if n == 5 {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	})
	app := newTestApp(t, srv, func(cfg *config) { cfg.smtpHelo = "signup.example.org" })
	const n = 35
	queueEmails(t, app.application, n)
	app.outbox.emails.sendDue(context.Background(), false)
	waitDrained(t, app.application)
	msgs := srv.messages()
	if len(msgs) != n-1 {
		t.Fatalf("%d messages arrived, want %d (one address refused)", len(msgs), n-1)
	}
	perSession := map[int64]int{}
	for _, m := range msgs {
		perSession[m.session]++
		if m.helo != "signup.example.org" {
			t.Errorf("EHLO %q, want the -smtp-helo name", m.helo)
		}
	}
	for id, count := range perSession {
		if count > maxPerConn {
			t.Errorf("connection %d carried %d messages, want at most %d", id, count, maxPerConn)
		}
	}
	if logs := app.logs.String(); strings.Contains(logs, "Already identified") || strings.Contains(logs, "will retry") {
		t.Errorf("a second EHLO or a retry:\n%s", logs)
	}
	t.Logf("%d messages over %d connections", len(msgs), len(perSession))
}

func TestDefaultHelo(t *testing.T) {
	t.Parallel()
	got := defaultHelo("no-reply@mail.example.com")
	if name, _ := os.Hostname(); strings.Contains(name, ".") {
		if got != name {
			t.Errorf("defaultHelo = %q, want the fully qualified host name %q", got, name)
		}
	} else if got != "mail.example.com" {
		t.Errorf("defaultHelo = %q on host %q, want the sender's domain", got, name)
	}
}

// TestEndlessReplyIsBounded: a server (or anyone on the path before TLS)
// that sends an endless multi-line reply ends the session as a transport
// error, retried, in every TLS mode; memory stays flat and shutdown is prompt.
func TestEndlessReplyIsBounded(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"none", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var conns sync.WaitGroup
			t.Cleanup(func() { ln.Close(); conns.Wait() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					conns.Go(func() {
						defer c.Close()
						line := []byte("220-" + strings.Repeat("x", 70) + "\r\n")
						for {
							c.SetWriteDeadline(time.Now().Add(10 * time.Second))
							if _, err := c.Write(line); err != nil {
								return
							}
						}
					})
				}
			}()
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			p := startRun(t, append(baseArgs(t.TempDir()), "-smtp-host", host, "-smtp-port", port, "-smtp-tls", mode, "-shutdown-timeout", "5s"), nil)
			signup(t, p.url, "endless@example.com")
			waitFor(t, 10*time.Second, "the bounded reply to end the attempt", func() bool {
				return containsLine(p.logs.String(), "will retry", "SMTP reply longer than 65536 bytes or 100 lines")
			})
			var mem runtime.MemStats
			runtime.GC() // what is held, not what other tests left to collect
			runtime.ReadMemStats(&mem)
			if mem.HeapInuse > 200<<20 {
				t.Errorf("heap in use %d MB", mem.HeapInuse>>20)
			}
			start := time.Now()
			p.cancel()
			<-p.done
			if p.err != nil || time.Since(start) > 3*time.Second {
				t.Errorf("shutdown: %v after %v", p.err, time.Since(start))
			}
		})
	}
}

func TestSenderRefusalIsRetried(t *testing.T) {
	t.Parallel()
	// A 5xx to MAIL FROM is about our sender, a configuration matter: the
	// message was never refused, so it is not given up.
	srv := startSMTP(t, func(s *testSMTP) {
		s.mail = func(n int64) error {
			if n == 1 {
				return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender not allowed"}
			}
			return nil
		}
	})
	app := newTestApp(t, srv, nil)
	app.background(app.outbox.emails.sweep)
	signup(t, app.url, "sender@example.com")
	srv.waitMessages(t, 1, 10*time.Second)
	if !containsLine(app.logs.String(), "will retry", "smtp_code=553", "MAIL FROM") {
		t.Error("the refusal was not logged as a retry with its code")
	}
}

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// queueEmails puts n welcome emails straight into the outbox.
func queueEmails(t testing.TB, app *application, n int) {
	t.Helper()
	for i := range n {
		u := &user{CreatedAt: time.Now(), Name: "Bulk", Email: fmt.Sprintf("bulk%d@example.com", i), passwordHash: []byte("x")}
		token, _ := newToken()
		if _, err := signupWith(t, app.store, u, token); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEveryEmailKind: each kind of email keeps the rules of them all: a
// subject naming the app, Auto-Submitted, one recipient, both parts; why
// it was sent and what to do if the reader did not ask for it; its link on
// a line of its own, and with a token an absolute expiry in UTC; no id; the
// name only escaped in HTML.
func TestEveryEmailKind(t *testing.T) {
	t.Parallel()
	app := testComposer(t)
	u := &user{ID: 4242, Name: "Ada <b>", Email: "ada@example.com", oldEmail: "ada@example.com", newEmail: "ada@new.example"}
	for kind, k := range emailKinds {
		e, err := app.email(kind, u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", time.Now())
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		r, err := mail.CreateReader(bytes.NewReader(e.Message))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := r.Header.Subject()
		if !strings.Contains(subject, "Signup") || r.Header.Get("Auto-Submitted") != "auto-generated" {
			t.Errorf("%s: Subject %q, Auto-Submitted %q", kind, subject, r.Header.Get("Auto-Submitted"))
		}
		if to, _ := r.Header.AddressList("To"); len(to) != 1 || to[0].Address != "ada@example.com" {
			t.Errorf("%s: To %v", kind, to)
		}
		plain, html := parts(t, e.Message)
		if plain == "" || html == "" {
			t.Errorf("%s: a part is missing", kind)
		}
		if !regexp.MustCompile(`(?i)ignore|if you did not|if it was not you`).MatchString(plain) {
			t.Errorf("%s: nothing for a reader who did not ask for it:\n%s", kind, plain)
		}
		if strings.Contains(plain, "4242") || strings.Contains(html, "4242") {
			t.Errorf("%s: an internal id", kind)
		}
		if strings.Contains(html, "Ada <b>") {
			t.Errorf("%s: the name unescaped in HTML", kind)
		}
		if k.path != "" && !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(app.baseURL+k.path)+`(\?token=ABCDEFGHIJKLMNOPQRSTUVWXYZ)?\r?$`).MatchString(plain) {
			t.Errorf("%s: no line with its link %s:\n%s", kind, k.path, plain)
		}
		if k.scope != "" && !regexp.MustCompile(`expires on \w+day \d+ \w+ \d{4} at \d\d:\d\d UTC`).MatchString(strings.Join(strings.Fields(plain), " ")) {
			t.Errorf("%s: no absolute expiry for its token:\n%s", kind, plain)
		}
		if strings.HasPrefix(string(kind), "confirm-email") || kind == "email-changed" {
			if !strings.Contains(plain, "ada@example.com") || !strings.Contains(plain, "ada@new.example") {
				t.Errorf("%s: does not name both addresses:\n%s", kind, plain)
			}
		}
	}
}
