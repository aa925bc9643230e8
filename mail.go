package main

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
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Delivery tuning. A claim is renewed while its process lives; claims left
// by a killed process are released at the next start (SQLite) or expire
// within a lease (PostgreSQL, where other instances take them over).
const (
	maxSessions    = 4               // SMTP sessions at once
	claimBatch     = 20              // emails claimed at a time by one session
	giveUpAfter    = 72 * time.Hour  // a temporary failure this long after queueing is final
	sweepIdle      = 2 * time.Second // the sweeper looks for due emails at least this often: another process may add some
	sweepBusy      = 50 * time.Millisecond
	tokenPurgeTick = time.Hour
)

// mailTemplate is one kind of email: its subject and bodies.
type mailTemplate struct {
	text *template.Template
	html *htmltemplate.Template
}

// How long tokens live.
const (
	tokenTTL = 72 * time.Hour   // activation
	resetTTL = 45 * time.Minute // password reset
	authTTL  = 24 * time.Hour   // authentication (bearer)
)

// emailTokens gives the token each kind of email carries, if any: its
// scope and how long it lives.
var emailTokens = map[string]struct {
	scope string
	ttl   time.Duration
}{
	"welcome":        {"activation", tokenTTL},
	"activation":     {"activation", tokenTTL},
	"password-reset": {"password-reset", resetTTL},
}

// mailData is what an email template is given.
type mailData struct {
	AppName string
	Name    string // as the user typed it: in the bodies only, escaped in HTML
	Link    string // with its token, where the email carries one
	Expires string // when the link stops working, in UTC; empty if it has no token
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

// compose writes the email of this kind to u, carrying token, as an outbox
// row. Only the address (validated) and the fixed subject go into headers;
// the user's name appears in the bodies alone.
func (app *application) compose(kind string, u *user, token string, now time.Time) (*email, error) {
	t, ok := app.templates.emails[kind]
	if !ok {
		return nil, fmt.Errorf("no email of kind %q", kind)
	}
	sender := app.sender
	data := mailData{AppName: app.cfg.appName, Name: u.Name}
	switch kind {
	case "welcome", "activation":
		data.Link = app.cfg.baseURL + "/activate?token=" + token
		data.Expires = formatTime(now.Add(tokenTTL))
	case "password-reset":
		data.Link = app.cfg.baseURL + "/reset-password?token=" + token
		data.Expires = formatTime(now.Add(resetTTL))
	case "account-exists":
		data.Link = app.cfg.baseURL + "/forgot-password"
	}
	e, err := composeEmail(t, data, sender, u.Email, kind, now)
	if err != nil {
		return nil, err
	}
	e.UserID = u.ID
	return e, nil
}

// formatTime is how emails and pages write a time: absolute, in UTC.
func formatTime(t time.Time) string {
	return t.UTC().Format("Monday 2 January 2006 at 15:04 UTC")
}

// composeEmail writes the email of template t with data, from sender to
// the address to.
func composeEmail(t mailTemplate, data mailData, sender *mail.Address, to, kind string, now time.Time) (*email, error) {
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
	h.SetSubject(strings.TrimSpace(subject.String()))
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
	return &email{
		Kind:      kind,
		CreatedAt: now,
		MessageID: "<" + messageID + ">",
		Recipient: to,
		Message:   msg.Bytes(),
	}, nil
}

// mailer opens authenticated SMTP sessions to the configured server.
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

// Bounds on one SMTP session. Exim queues the 11th and later messages of a
// connection instead of delivering them; a reply may not grow without end.
const (
	maxPerSession = 10
	maxReplyBytes = 64 << 10
	maxReplyLines = 100
)

// smtpSession is an open, authenticated connection, closed when the context
// it was opened with is cancelled.
type smtpSession struct {
	*smtp.Client
	stop func() bool
	sent int // messages accepted over it
}

// sessionError is a failure that concerns the session, not the message:
// connecting, TLS, logging in or MAIL FROM. Whatever its reply code, it is
// worth a retry: the message itself was never refused.
type sessionError struct {
	step string
	err  error
}

func (e *sessionError) Error() string { return e.step + ": " + e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

// rcptError is the server's refusal of RCPT TO: a bare 550, 551 or 553 there
// is about the address.
type rcptError struct{ err error }

func (e *rcptError) Error() string { return "RCPT TO: " + e.err.Error() }
func (e *rcptError) Unwrap() error { return e.err }

// errReplyTooLong ends a session whose server sends an endless reply.
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
func (m *mailer) open(ctx context.Context) (*smtpSession, error) {
	s, err := m.dial(ctx)
	if err != nil {
		return nil, &sessionError{"connect", err}
	}
	return s, nil
}

func (m *mailer) dial(ctx context.Context) (*smtpSession, error) {
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
	return &smtpSession{Client: c, stop: context.AfterFunc(ctx, func() { raw.Close() })}, nil
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

// close says goodbye and closes the connection.
func (s *smtpSession) close() {
	if err := s.Quit(); err != nil {
		s.Close()
	}
	s.stop()
}

// abort closes the connection without a word: after a failure its state is
// unknown, and an RSET would cost a second EHLO, which some servers refuse.
func (s *smtpSession) abort() {
	s.Close()
	s.stop()
}

// send transmits e over s: MAIL, RCPT, DATA. After a successful DATA the
// transaction is over (RFC 5321 4.1.1.4): the next MAIL needs no RSET.
func (s *smtpSession) send(from string, e *email) error {
	if err := s.Mail(from, nil); err != nil {
		return &sessionError{"MAIL FROM", err}
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

// refusesRecipient reports whether err is a 5xx reply about the recipient
// address itself, which no retry will change: an enhanced code 5.1.x, or a
// bare 550, 551 or 553 to RCPT. Any other 5xx (quota, policy, a full
// mailbox, the server's own trouble) may pass later.
func refusesRecipient(err error) bool {
	var se *smtp.SMTPError
	var session *sessionError
	if !errors.As(err, &se) || se.Code < 500 || errors.As(err, &session) {
		return false
	}
	if se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 1 {
		return true
	}
	var rcpt *rcptError
	bare := se.EnhancedCode == smtp.EnhancedCode{} || se.EnhancedCode == smtp.NoEnhancedCode
	return bare && errors.As(err, &rcpt) && (se.Code == 550 || se.Code == 551 || se.Code == 553)
}

// backoff returns how long to wait before attempt number attempt+1:
// exponential from min, capped at max, jittered into its upper half.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := max
	if attempt < 40 {
		d = min << (attempt - 1)
	}
	if d > max || d <= 0 {
		d = max
	}
	d = d/2 + mrand.N(d/2+1)
	if d < min {
		d = min
	}
	return d
}

// kickDelivery makes sure a deliverer will look for due emails soon. At most
// one waits for a session slot at a time; the one that takes the slot clears
// the flag before claiming, so an email committed before a kick is always
// seen by some deliverer.
func (app *application) kickDelivery() {
	if app.draining() {
		return // what is due now waits for the next start
	}
	if app.deliveryQueued.CompareAndSwap(false, true) {
		app.background(app.deliver)
	}
}

// draining reports whether shutdown has begun waiting for background tasks.
func (app *application) draining() bool {
	select {
	case <-app.stopping:
		return true
	default:
		return false
	}
}

// deliver waits for one of the maxSessions slots, then sends due emails.
func (app *application) deliver(ctx context.Context) {
	select {
	case app.sessions <- struct{}{}:
	case <-ctx.Done():
		app.deliveryQueued.Store(false)
		return
	}
	defer func() { <-app.sessions }()
	app.deliveryQueued.Store(false)
	app.sendDue(ctx)
}

// sendDue claims due emails a batch at a time and sends them over one SMTP
// session until none is due. Once shutdown begins it claims no further
// batch: a draining process finishes what it holds, not what others keep
// adding. When ctx ends (the shutdown deadline), the exchange in progress
// is cut and what is unsent stays pending.
func (app *application) sendDue(ctx context.Context) {
	dbctx := context.WithoutCancel(ctx)
	var s *smtpSession
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	// The first batch is claimed even while draining: this deliverer was
	// kicked, before shutdown began, for an email committed then.
	for first := true; ctx.Err() == nil && (first || !app.draining()); first = false {
		batch, err := app.store.claimDue(dbctx, app.now(), app.cfg.claimLease, claimBatch)
		if err != nil {
			app.logger.Error("claim emails", "error", err)
			return
		}
		if len(batch) == 0 {
			return
		}
		if len(batch) == claimBatch {
			app.kickDelivery() // a backlog: let another session help
		}
		for i, e := range batch {
			if e.unsealErr != nil {
				app.recompose(dbctx, e)
				continue
			}
			if s != nil && s.sent == maxPerSession {
				s.close()
				s = nil
			}
			var err error
			if s == nil {
				s, err = app.mailer.open(ctx)
			}
			if err == nil {
				err = s.send(app.mailer.from, e)
			}
			if err == nil {
				app.recordSent(dbctx, e)
				continue
			}
			if ctx.Err() != nil {
				// The shutdown deadline cut the exchange: the rest stays
				// pending, unclaimed, for the next start.
				for _, e := range batch[i:] {
					if err := app.store.release(dbctx, e); err != nil {
						app.logger.Error("release email", "id", e.ID, "error", err)
					}
				}
				return
			}
			if s == nil {
				// The server is unreachable: the whole batch waits for its retry.
				for _, e := range batch[i:] {
					app.recordFailure(dbctx, e, err)
				}
				break
			}
			app.recordFailure(dbctx, e, err)
			s.abort()
			s = nil
		}
	}
}

// recompose composes afresh, with a new token, an email whose stored
// message cannot be opened (the database was restored without its key
// file), and leaves it due now.
func (app *application) recompose(ctx context.Context, e *email) {
	if err := app.store.release(ctx, e); err != nil {
		app.logger.Error("release email", "id", e.ID, "error", err)
		return
	}
	if _, err := app.retryEmail(ctx, e.ID); err != nil {
		app.logger.Error("compose email afresh", "id", e.ID, "error", err)
		return
	}
	app.logger.Warn("email composed afresh with a new link: its stored message was sealed with another key (a database restored without its .key file?)",
		"user_id", e.UserID, "old_message_id", e.MessageID)
	app.kickDelivery()
}

// recordSent marks e sent and logs it.
func (app *application) recordSent(ctx context.Context, e *email) {
	if err := app.store.markSent(ctx, e); err != nil {
		app.logger.Error("mark email sent", "id", e.ID, "message_id", e.MessageID, "error", err)
		return
	}
	app.metrics.emailsSent.Add(1)
	app.logger.Info("email sent", "user_id", e.UserID, "message_id", e.MessageID, "attempt", e.Attempts+1)
}

// recordFailure logs a failed attempt at e once, and either schedules a
// retry or, for a refused address or after giveUpAfter, marks it failed.
func (app *application) recordFailure(ctx context.Context, e *email, sendErr error) {
	attempt := e.Attempts + 1
	args := []any{"user_id", e.UserID, "message_id", e.MessageID, "attempt", attempt}
	why := sendErr.Error()
	var se *smtp.SMTPError
	if errors.As(sendErr, &se) {
		args = append(args, "smtp_code", se.Code)
		if c := se.EnhancedCode; c[0] > 0 {
			args = append(args, "smtp_enhanced_code", fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]))
			why = fmt.Sprintf("%s (%d.%d.%d)", why, c[0], c[1], c[2])
		}
	}
	args = append(args, "error", sendErr.Error())
	now := app.now()
	var err error
	switch {
	case refusesRecipient(sendErr):
		app.metrics.emailsFailed.Add(1)
		app.logger.Error("email rejected for good", args...)
		err = app.store.markFailed(ctx, e, why)
	case now.Sub(e.CreatedAt) >= giveUpAfter:
		app.metrics.emailsFailed.Add(1)
		app.logger.Error("email given up after "+giveUpAfter.String(), args...)
		err = app.store.markFailed(ctx, e, why)
	default:
		wait := backoff(attempt, app.cfg.mailRetryMin, app.cfg.mailRetryMax)
		app.logger.Warn("email not sent, will retry", append(args, "retry_in", wait.String())...)
		err = app.store.markRetry(ctx, e, now.Add(wait), why)
		select {
		case app.resched <- struct{}{}:
		default:
		}
	}
	if err != nil {
		app.logger.Error("record email failure", "id", e.ID, "error", err)
	}
}

// sweep kicks delivery whenever pending emails fall due: at start-up (what a
// crash or a shutdown deadline left behind) and after retry waits. It also
// purges expired tokens and truncates the WAL from time to time. It returns
// at once when shutdown begins.
func (app *application) sweep(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastPurge, lastCheckpoint time.Time
	stuck := false // the last checkpoint could not truncate the WAL
	for {
		select {
		case <-app.stopping:
			return
		case <-ctx.Done():
			return
		case <-app.resched:
		case <-timer.C:
		}
		now := app.now()
		if now.Sub(lastCheckpoint) >= app.cfg.checkpointInterval {
			lastCheckpoint = now
			truncated, err := app.store.checkpoint(ctx)
			switch {
			case err != nil:
				app.logger.Error("checkpoint", "error", err)
			case !truncated && !stuck:
				app.logger.Warn("checkpoint could not truncate the WAL: another process (a Litestream replica, say) reads an older snapshot; " +
					"sent tokens leave the WAL once it catches up, when the WAL starts over")
			case truncated && stuck:
				app.logger.Info("checkpoint truncates the WAL again")
			}
			stuck = err == nil && !truncated
		}
		if now.Sub(lastPurge) >= tokenPurgeTick {
			lastPurge = now
			if n, err := app.store.purgeExpiredTokens(ctx, now); err != nil {
				app.logger.Error("purge expired tokens", "error", err)
			} else if n > 0 {
				app.logger.Info("purged expired tokens", "count", n)
			}
		}
		wait := sweepIdle
		next, ok, err := app.store.nextDue(ctx)
		if err != nil {
			app.logger.Error("look for due emails", "error", err)
		}
		if ok {
			if until := next.Sub(now); until > 0 {
				wait = min(wait, until)
			} else {
				app.kickDelivery()
				wait = sweepBusy
			}
		}
		timer.Reset(wait) // since Go 1.23, Reset drops a stale expiry by itself
	}
}

// capture is the development mail server: it writes each message it
// receives to a file in its directory.
type capture struct {
	server *smtp.Server
	addr   string
}

// startCapture serves SMTP on a free port of 127.0.0.1, writing each message
// as an .eml file into dir.
func startCapture(dir string, logger *slog.Logger) (*capture, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail capture: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mail capture: %w", err)
	}
	s := smtp.NewServer(&captureBackend{dir: dir, logger: logger})
	s.Domain = "localhost"
	s.ReadTimeout = time.Minute
	s.WriteTimeout = time.Minute
	go s.Serve(ln)
	return &capture{server: s, addr: ln.Addr().String()}, nil
}

// close stops the capture server.
func (c *capture) close() { c.server.Close() }

type captureBackend struct {
	dir    string
	logger *slog.Logger
	seq    atomic.Int64
}

func (b *captureBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &captureSession{backend: b}, nil
}

type captureSession struct {
	backend *captureBackend
	to      []string
}

func (s *captureSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *captureSession) Reset()        { s.to = nil }
func (s *captureSession) Logout() error { return nil }

func (s *captureSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%d.eml", time.Now().UTC().Format("20060102T150405.000Z"), s.backend.seq.Add(1))
	file := filepath.Join(s.backend.dir, name)
	// Write, then rename: a reader of the directory never sees half a message.
	tmp := filepath.Join(s.backend.dir, "."+name+".tmp")
	err = os.WriteFile(tmp, msg, 0o600)
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		s.backend.logger.Error("mail capture", "error", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot write the message"}
	}
	// In development only, the link goes in the log too, to click from the
	// terminal: production never logs a token.
	s.backend.logger.Info("email captured", "to", strings.Join(s.to, ","), "file", file, "link", plainLink(msg))
	return nil
}

// plainLink returns the first line of msg's plain part that is a link, or "".
func plainLink(msg []byte) string {
	r, err := mail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	for {
		p, err := r.NextPart()
		if err != nil {
			return ""
		}
		if h, ok := p.Header.(*mail.InlineHeader); ok {
			if ct, _, _ := h.ContentType(); ct != "text/plain" {
				continue
			}
		}
		body, _ := io.ReadAll(p.Body)
		for line := range strings.Lines(string(body)) {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "http://") || strings.HasPrefix(line, "https://") {
				return line
			}
		}
		return ""
	}
}
