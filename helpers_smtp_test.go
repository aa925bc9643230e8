package main

// helpers_smtp_test.go is the test SMTP server: a real go-smtp server on
// 127.0.0.1:0 that records what it accepts.

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
