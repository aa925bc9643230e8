package main

// mail.go writes an email's MIME message (composeEmail, for outbox.go's
// composer) and is the SMTP client: opening an authenticated connection
// (TLS as -smtp-tls says), sending over it, and telling a refusal of the
// address from the rest.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"mime"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailData is what an email template is given.
type mailData struct {
	AppName string
	locale  *locale // its language: .Lang, $.T
	Name    string  // as the user typed it: in the bodies only, escaped in HTML
	Link    string  // with its token, where the email carries one
	Expires string  // when the link stops working, in UTC; empty if it has no token

	OldEmail, NewEmail string // an address change's: from which address to which
}

// mailTemplate is one kind of email: its subject and bodies.
type mailTemplate struct {
	text *template.Template
	html *htmltemplate.Template
}

// parseSender parses the -smtp-sender address.
func parseSender(s string) (*mail.Address, error) {
	addr, err := mail.ParseAddress(s)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(addr.Address, "@") {
		return nil, fmt.Errorf("%q has no domain", s)
	}
	return addr, nil
}

// composeEmail writes the MIME message of template t with data, from
// sender to the address to, as an outbox row.
func composeEmail(t mailTemplate, data mailData, sender *mail.Address, to string, now time.Time) (*outboxRow, error) {
	var subject, plain, html bytes.Buffer
	if err := t.text.ExecuteTemplate(&subject, "subject", data); err != nil {
		return nil, err
	}
	if err := t.text.ExecuteTemplate(&plain, "plainBody", data); err != nil {
		return nil, err
	}
	if err := t.html.ExecuteTemplate(&html, "htmlBody", data); err != nil {
		return nil, err
	}

	id := make([]byte, 16)
	rand.Read(id)
	_, domain, _ := strings.Cut(sender.Address, "@")
	messageID := hex.EncodeToString(id) + "@" + domain

	var h mail.Header
	h.SetAddressList("From", []*mail.Address{sender})
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.AddRaw(foldedSubject(strings.TrimSpace(subject.String())))
	h.Set("Auto-Submitted", "auto-generated")
	h.SetDate(now)
	h.SetMessageID(messageID)

	var msg bytes.Buffer
	w, err := mail.CreateInlineWriter(&msg, h)
	if err != nil {
		return nil, err
	}
	for _, part := range []struct {
		contentType string
		body        []byte
	}{{"text/plain", plain.Bytes()}, {"text/html", html.Bytes()}} {
		var ph mail.InlineHeader
		ph.SetContentType(part.contentType, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write(part.body); err != nil {
			return nil, err
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return &outboxRow{
		Channel:   channelEmail,
		CreatedAt: now,
		MessageID: "<" + messageID + ">",
		Recipient: to,
		Message:   msg.Bytes(),
	}, nil
}

// foldedSubject is the Subject header line of subject: as it is when it
// is ASCII, else encoded (RFC 2047) in words of whole words, each word's
// space inside it, folded so that no line runs past 76 characters (a
// decoder drops the white space between encoded words).
func foldedSubject(subject string) []byte {
	line := "Subject: "
	if encoded := mime.QEncoding.Encode("utf-8", subject); encoded == subject && len(line+subject) <= 76 {
		return []byte(line + subject + "\r\n")
	}
	var out strings.Builder
	out.WriteString("Subject:")
	width := len("Subject:")
	words := strings.SplitAfter(subject, " ")
	for len(words) > 0 {
		// As many whole words as fit on this line, and at least one.
		n := 1
		for n < len(words) && len(mime.QEncoding.Encode("utf-8", strings.Join(words[:n+1], "")))+width+1 <= 76 {
			n++
		}
		word := mime.QEncoding.Encode("utf-8", strings.Join(words[:n], ""))
		if !strings.HasPrefix(word, "=?") { // plain ASCII words encoded all the same, so the spaces stay inside
			word = "=?utf-8?q?" + strings.NewReplacer(" ", "_", "=", "=3D", "?", "=3F", "_", "=5F").Replace(word) + "?="
		}
		if width+1+len(word) > 76 && width > len("Subject:") {
			out.WriteString("\r\n")
			width = 0
		}
		out.WriteString(" " + word)
		width += 1 + len(word)
		words = words[n:]
	}
	out.WriteString("\r\n")
	return []byte(out.String())
}

// mailer opens authenticated SMTP connections to the configured server.
type mailer struct {
	addr     string // host:port
	tlsMode  string // starttls, tls or none
	username string
	password string
	rootCAs  *x509.CertPool // nil: the system's
	from     string         // envelope sender
	helo     string         // the name given in EHLO
	logger   *slog.Logger

	connectTimeout time.Duration // dial, TLS, greeting and AUTH together
	commandTimeout time.Duration
	dataTimeout    time.Duration
}

// newMailer returns a mailer for the SMTP settings in cfg.
func newMailer(cfg config, logger *slog.Logger) (*mailer, error) {
	sender, err := parseSender(cfg.smtpSender)
	if err != nil {
		return nil, err
	}
	return &mailer{
		addr:           net.JoinHostPort(cfg.smtpHost, strconv.Itoa(cfg.smtpPort)),
		tlsMode:        cfg.smtpTLS,
		username:       cfg.smtpUsername,
		password:       cfg.smtpPassword,
		from:           sender.Address,
		helo:           cfg.smtpHelo,
		logger:         logger,
		connectTimeout: 15 * time.Second,
		commandTimeout: 30 * time.Second,
		dataTimeout:    60 * time.Second,
	}, nil
}

// Bounds on one SMTP connection. Exim queues the 11th and later messages of a
// connection instead of delivering them; a reply may not grow without end.
const (
	maxPerConn    = 10
	maxReplyBytes = 64 << 10
	maxReplyLines = 100
)

// smtpConn is an open, authenticated connection, closed when the context
// it was opened with is cancelled.
type smtpConn struct {
	*smtp.Client
	stop func() bool
	from string // the envelope sender
	sent int    // messages accepted over it
}

// connError is a failure that concerns the connection, not the message:
// connecting, TLS, logging in or MAIL FROM. Whatever its reply code, it is
// worth a retry: the message itself was never refused.
type connError struct {
	step string
	err  error
}

func (e *connError) Error() string { return e.step + ": " + e.err.Error() }

func (e *connError) Unwrap() error { return e.err }

// rcptError is the server's refusal of RCPT TO: a bare 550, 551 or 553 there
// is about the address.
type rcptError struct{ err error }

func (e *rcptError) Error() string { return "RCPT TO: " + e.err.Error() }

func (e *rcptError) Unwrap() error { return e.err }

// errReplyTooLong ends a connection whose server sends an endless reply.
var errReplyTooLong = fmt.Errorf("SMTP reply longer than %d bytes or %d lines", maxReplyBytes, maxReplyLines)

// boundedConn caps each reply the server sends: what is read between two
// writes of ours is one reply (go-smtp does not pipeline). It can replay a
// greeting first, for a connection whose greeting was read before STARTTLS.
type boundedConn struct {
	net.Conn
	replay       []byte
	bytes, lines int
}

func (c *boundedConn) Write(b []byte) (int, error) {
	c.bytes, c.lines = 0, 0
	return c.Conn.Write(b)
}

func (c *boundedConn) Read(b []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	n, err := c.Conn.Read(b)
	c.bytes += n
	c.lines += bytes.Count(b[:n], []byte("\n"))
	if c.bytes > maxReplyBytes || c.lines > maxReplyLines {
		return 0, errReplyTooLong
	}
	return n, err
}

// open dials the server, secures the connection as -smtp-tls says, and
// authenticates if a username is set.
func (m *mailer) open(ctx context.Context) (conn, error) {
	s, err := m.dial(ctx)
	if err != nil {
		return nil, &connError{"connect", err}
	}
	return s, nil
}

func (m *mailer) dial(ctx context.Context) (*smtpConn, error) {
	host, _, _ := net.SplitHostPort(m.addr)
	tlsConfig := &tls.Config{ServerName: host, RootCAs: m.rootCAs, MinVersion: tls.VersionTLS12}

	connectCtx, cancel := context.WithTimeout(ctx, m.connectTimeout)
	defer cancel()
	dialer := &net.Dialer{}
	var conn net.Conn
	var err error
	if m.tlsMode == "tls" {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConfig}).DialContext(connectCtx, "tcp", m.addr)
	} else {
		conn, err = dialer.DialContext(connectCtx, "tcp", m.addr)
	}
	if err != nil {
		return nil, err
	}
	// go-smtp sets its own deadline on each command; closing the connection
	// is what stops an exchange at once when the context ends.
	raw := conn
	stopConnect := context.AfterFunc(connectCtx, func() { raw.Close() })
	c, err := m.handshake(conn, tlsConfig)
	if err != nil {
		raw.Close()
		if connectCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (no answer within %v)", err, m.connectTimeout)
		}
		return nil, err
	}
	if !stopConnect() {
		c.Close()
		return nil, connectCtx.Err()
	}
	c.CommandTimeout = m.commandTimeout
	c.SubmissionTimeout = m.dataTimeout
	return &smtpConn{Client: c, from: m.from, stop: context.AfterFunc(ctx, func() { raw.Close() })}, nil
}

// handshake greets the server with one EHLO (and one more over TLS, as RFC
// 3207 requires), starts TLS where required and authenticates.
func (m *mailer) handshake(conn net.Conn, tlsConfig *tls.Config) (*smtp.Client, error) {
	bc := &boundedConn{Conn: conn}
	if m.tlsMode == "starttls" {
		// go-smtp's STARTTLS says "EHLO localhost", which strict relays
		// refuse: speak the few plain-text lines ourselves, then hand go-smtp
		// the TLS connection with a greeting to read.
		if err := m.startTLS(bc); err != nil {
			return nil, err
		}
		tc := tls.Client(conn, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		bc = &boundedConn{Conn: tc, replay: []byte("220 TLS started\r\n")}
	}
	c := smtp.NewClient(bc)
	// EHLO now: later calls such as SupportsAuth would swallow its error, a
	// failed certificate check among them.
	if err := c.Hello(m.helo); err != nil {
		return nil, err
	}
	if m.username == "" {
		return c, nil
	}
	var auth sasl.Client
	switch {
	case c.SupportsAuth("PLAIN"):
		auth = sasl.NewPlainClient("", m.username, m.password)
	case c.SupportsAuth("LOGIN"):
		auth = sasl.NewLoginClient(m.username, m.password)
	default:
		return nil, errors.New("server offers neither AUTH PLAIN nor AUTH LOGIN")
	}
	if err := c.Auth(auth); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 535 {
			m.logger.Error("SMTP server rejected the login: check -smtp-username and -smtp-password; emails stay pending until it is fixed",
				"smtp_code", se.Code, "smtp_message", se.Message, "username", m.username)
		}
		return nil, err
	}
	return c, nil
}

// startTLS reads the greeting, says EHLO and asks for STARTTLS over the
// plain connection, every reply bounded.
func (m *mailer) startTLS(conn *boundedConn) error {
	text := textproto.NewConn(conn)
	expect := func(code int) (string, error) {
		_, msg, err := text.ReadResponse(code)
		var pe *textproto.Error
		if errors.As(err, &pe) {
			return "", &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
		}
		return msg, err
	}
	if _, err := expect(220); err != nil {
		return err
	}
	if err := text.PrintfLine("EHLO %s", m.helo); err != nil {
		return err
	}
	ext, err := expect(250)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(strings.Split(ext, "\n"), func(l string) bool { return strings.EqualFold(strings.TrimSpace(l), "STARTTLS") }) {
		return errors.New("server does not offer STARTTLS (-smtp-tls starttls requires it)")
	}
	if err := text.PrintfLine("STARTTLS"); err != nil {
		return err
	}
	_, err = expect(220)
	return err
}

// full reports whether s has carried as many messages as one connection
// should.
func (s *smtpConn) full() bool { return s.sent >= maxPerConn }

// close says goodbye and closes the connection.
func (s *smtpConn) close() {
	if err := s.Quit(); err != nil {
		s.Close()
	}
	s.stop()
}

// abort closes the connection without a word: after a failure its state is
// unknown, and an RSET would cost a second EHLO, which some servers refuse.
func (s *smtpConn) abort() {
	s.Close()
	s.stop()
}

// send transmits e over s: MAIL, RCPT, DATA. After a successful DATA the
// transaction is over (RFC 5321 4.1.1.4): the next MAIL needs no RSET.
func (s *smtpConn) send(e *outboxRow) error {
	if err := s.Mail(s.from, nil); err != nil {
		return &connError{"MAIL FROM", err}
	}
	if err := s.Rcpt(e.Recipient, nil); err != nil {
		return &rcptError{err}
	}
	w, err := s.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(e.Message); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	s.sent++
	return nil
}

// permanent reports whether err ends an email for good: see refusesRecipient.
func (m *mailer) permanent(err error) bool { return refusesRecipient(err) }

// refusesRecipient reports whether err is a 5xx reply about the recipient
// address itself, which no retry will change: an enhanced code 5.1.x, or a
// bare 550, 551 or 553 to RCPT. Any other 5xx (quota, policy, a full
// mailbox, the server's own trouble) may pass later.
func refusesRecipient(err error) bool {
	var se *smtp.SMTPError
	var ce *connError
	if !errors.As(err, &se) || se.Code < 500 || errors.As(err, &ce) {
		return false
	}
	if se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 1 {
		return true
	}
	var rcpt *rcptError
	bare := se.EnhancedCode == smtp.EnhancedCode{} || se.EnhancedCode == smtp.NoEnhancedCode
	return bare && errors.As(err, &rcpt) && (se.Code == 550 || se.Code == 551 || se.Code == 553)
}
