package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"golang.org/x/time/rate"
)

// application holds the service's dependencies and the state of its
// background tasks.
type application struct {
	cfg     config
	logger  *slog.Logger
	store   *store
	mailer  *mailer
	sender  *mail.Address
	now     func() time.Time
	limiter *limiter // nil when -limiter-enabled=false
	metrics *metrics

	wg               sync.WaitGroup
	tasks            atomic.Int64                               // background tasks running
	bgCtx            context.Context                            // handed to background tasks
	cancelBackground context.CancelFunc                         // at the shutdown deadline
	stopping         chan struct{}                              // closed when shutdown begins waiting for tasks
	resched          chan struct{}                              // tells the sweeper a retry time changed
	sessions         chan struct{}                              // one token per SMTP session running
	hashSlots        chan struct{}                              // one token per bcrypt hash running
	hashWait         time.Duration                              // longest wait for a slot before 503
	hashTime         atomic.Int64                               // how long a hash takes, in ns: a moving average
	wait             func(ctx context.Context, d time.Duration) // sleep; tests record it
	deliveryQueued   atomic.Bool                                // a deliverer is waiting for a session
	dbGone           atomic.Bool                                // the database file was deleted or replaced
	templates        *templates
	crossOrigin      *http.CrossOriginProtection
}

// newApplication wires the dependencies together.
func newApplication(cfg config, logger *slog.Logger, st *store, m *mailer, t *templates) *application {
	sender, _ := parseSender(cfg.smtpSender) // checked with the config
	bgCtx, cancel := context.WithCancel(context.Background())
	app := &application{
		cfg:              cfg,
		logger:           logger,
		store:            st,
		mailer:           m,
		sender:           sender,
		now:              time.Now,
		metrics:          newMetrics(),
		bgCtx:            bgCtx,
		cancelBackground: cancel,
		stopping:         make(chan struct{}),
		resched:          make(chan struct{}, 1),
		sessions:         make(chan struct{}, maxSessions),
		hashSlots:        make(chan struct{}, runtime.GOMAXPROCS(0)),
		hashWait:         maxHashWait,
		templates:        t,
		crossOrigin:      http.NewCrossOriginProtection(),
		wait:             sleep,
	}
	app.hashTime.Store(int64(estimateHashTime(cfg.bcryptCost)))
	for _, origin := range cfg.corsOrigins {
		app.crossOrigin.AddTrustedOrigin(origin) // checked with the config
	}
	if cfg.limiterEnabled {
		app.limiter = newLimiter(rate.Limit(cfg.limiterRPS), cfg.limiterBurst)
	}
	return app
}

// routes lists every route of the API.
func (app *application) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthcheck", app.handleHealthcheck)
	mux.HandleFunc("POST /v1/users", app.handleSignup)
	mux.HandleFunc("PUT /v1/users/activated", app.handleActivateUser)
	mux.HandleFunc("POST /v1/tokens/activation", app.handleCreateActivationToken)
	mux.HandleFunc("POST /v1/tokens/authentication", app.handleCreateAuthToken)
	mux.HandleFunc("DELETE /v1/tokens/authentication", app.handleDeleteAuthToken)
	mux.HandleFunc("GET /v1/users/me", app.handleMe)
	mux.HandleFunc("POST /v1/tokens/password-reset", app.handleCreateResetToken)
	mux.HandleFunc("PUT /v1/users/password", app.handleResetPassword)
	mux.HandleFunc("GET /debug/vars", app.handleMetrics)

	mux.HandleFunc("GET /{$}", app.handleRoot)
	mux.HandleFunc("GET /signup", app.handleSignupPage)
	mux.HandleFunc("POST /signup", app.handleSignupForm)
	mux.HandleFunc("GET /activate", app.handleActivatePage)
	mux.HandleFunc("POST /activate", app.handleActivateForm)
	mux.HandleFunc("GET /resend", app.handleResendPage)
	mux.HandleFunc("POST /resend", app.handleResendForm)
	mux.HandleFunc("GET /forgot-password", app.handleForgotPage)
	mux.HandleFunc("POST /forgot-password", app.handleForgotForm)
	mux.HandleFunc("GET /reset-password", app.handleResetPage)
	mux.HandleFunc("POST /reset-password", app.handleResetForm)
	mux.HandleFunc("GET /static/style.css", app.handleStyle)
	return app.recoverPanic(app.countRequests(app.refuseWhenGone(app.rateLimit(app.cors(app.sameOrigin(app.jsonErrors(mux)))))))
}

// background runs fn in a goroutine that shutdown waits for. fn's context
// is cancelled when the shutdown deadline passes; a panic is logged, never
// fatal.
func (app *application) background(fn func(ctx context.Context)) {
	app.tasks.Add(1)
	app.wg.Go(func() {
		defer app.tasks.Add(-1)
		defer func() {
			if p := recover(); p != nil {
				app.logger.Error("background task panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}()
		fn(app.bgCtx)
	})
}

// serve answers HTTP on ln until ctx is cancelled or SIGINT or SIGTERM
// arrives, then shuts down as DESIGN.md says: requests first, then
// background tasks, both within -shutdown-timeout. A second signal while
// draining returns at once.
func (app *application) serve(ctx context.Context, ln net.Listener, getenv func(string) string) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	// With SQLite this process holds the database lock: any claim is left
	// by one that died. On PostgreSQL other instances' claims are theirs
	// until their lease expires.
	if app.store.engine == "sqlite" {
		if err := app.store.releaseAllClaims(ctx); err != nil {
			return err
		}
	}
	pending, failed, err := app.store.outboxCounts(ctx)
	if err != nil {
		return err
	}
	app.logger.Info("outbox", "pending", pending, "failed", failed)
	app.background(app.sweep)

	var fresh newConns
	srv := &http.Server{
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(app.logger.Handler(), slog.LevelWarn),
		ConnState:         fresh.track,
	}
	capped := &capListener{Listener: ln, max: app.cfg.maxConns, perClient: app.cfg.maxConnsPerIP,
		exempt: app.trusted, metrics: app.metrics, open: map[netip.Addr]int{}}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(capped) }()
	app.logger.Info("starting server", "addr", ln.Addr().String(), "env", app.cfg.env, "version", version())
	sdNotify(getenv, "READY=1")

	lost := make(chan error, 1)
	stopWatch := make(chan struct{})
	watching := make(chan struct{}, 2)
	defer func() {
		close(stopWatch)
		<-watching
		<-watching
		if err := app.store.releaseOwnClaims(context.Background()); err != nil {
			app.logger.Error("release claims", "error", err)
		}
	}()
	go func() { app.watchDatabase(stopWatch, lost); watching <- struct{}{} }()
	go func() { app.renewClaims(stopWatch); watching <- struct{}{} }()

	var lostErr error
	select {
	case err := <-serveErr:
		app.cancelBackground()
		return fmt.Errorf("serve: %w", err)
	case sig := <-sigs:
		app.logger.Info("shutting down server", "signal", sig.String())
	case <-ctx.Done():
		app.logger.Info("shutting down server", "signal", "none (context cancelled)")
	case lostErr = <-lost:
		app.logger.Error("shutting down server: the database file is gone; signups since are refused with 503", "error", lostErr)
	}
	sdNotify(getenv, "STOPPING=1")

	done := make(chan error, 1)
	go func() { done <- app.shutdown(srv, ln, serveErr, &fresh) }()
	select {
	case err := <-done:
		return errors.Join(lostErr, err)
	case sig := <-sigs:
		app.cancelBackground()
		return fmt.Errorf("forced exit on second signal (%v): undelivered emails stay pending for the next start", sig)
	}
}

// shutdown drains requests, then background tasks, within -shutdown-timeout.
func (app *application) shutdown(srv *http.Server, ln net.Listener, serveErr <-chan error, fresh *newConns) error {
	start := time.Now()
	deadline, cancel := context.WithTimeout(context.Background(), app.cfg.shutdownTimeout)
	defer cancel()

	// http.Server.Shutdown closes a connection whose first request is read
	// after it began without answering it. Stop accepting first, and give
	// the connections just accepted a moment to send their request.
	ln.Close()
	<-serveErr
	fresh.wait(deadline, 500*time.Millisecond)
	httpErr := srv.Shutdown(deadline)

	app.logger.Info("completing background tasks", "tasks", app.tasks.Load())
	close(app.stopping)
	idle := make(chan struct{})
	go func() {
		app.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-deadline.Done():
		left := app.tasks.Load()
		app.cancelBackground()
		// Cancelled sends cut their connection and release their emails
		// at once; wait for that briefly so the outbox says so.
		select {
		case <-idle:
		case <-time.After(2 * time.Second):
		}
		pending, _, _ := app.store.outboxCounts(context.Background())
		app.logger.Error("shutdown deadline passed", "timeout", app.cfg.shutdownTimeout.String(), "tasks_left", left, "emails_pending", pending)
		return fmt.Errorf("shutdown deadline of %v passed with %d background tasks running; %d emails stay pending for the next start",
			app.cfg.shutdownTimeout, left, pending)
	}
	app.cancelBackground()
	pending, _, err := app.store.outboxCounts(context.Background())
	if err != nil {
		return err
	}
	if httpErr != nil {
		app.logger.Error("shutdown deadline passed while requests were in flight", "error", httpErr)
		return fmt.Errorf("shutdown: %w", httpErr)
	}
	app.logger.Info("stopped server", "emails_pending", pending, "took", time.Since(start).String())
	return nil
}

// watchDatabase checks every second that the database file is still the
// one opened; when it is not, it refuses every request from then on and
// reports the error on lost, once.
func (app *application) watchDatabase(stop <-chan struct{}, lost chan<- error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if err := app.store.checkFile(); err != nil {
			app.dbGone.Store(true)
			lost <- err
			return
		}
	}
}

// renewClaims extends this instance's claims on emails every third of a
// lease, until stop is closed: while it lives no other instance takes them
// over, and once it dies they are free within one lease.
func (app *application) renewClaims(stop <-chan struct{}) {
	tick := time.NewTicker(app.cfg.claimLease / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if err := app.store.renewClaims(context.Background(), app.now(), app.cfg.claimLease); err != nil {
			app.logger.Error("renew claims", "error", err)
		}
	}
}

// newConns tracks the connections accepted whose first request has not
// been read yet.
type newConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (n *newConns) track(c net.Conn, state http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if state == http.StateNew {
		if n.conns == nil {
			n.conns = make(map[net.Conn]bool)
		}
		n.conns[c] = true
		return
	}
	delete(n.conns, c)
}

// wait returns when no connection is new, after at most limit.
func (n *newConns) wait(ctx context.Context, limit time.Duration) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) && ctx.Err() == nil {
		n.mu.Lock()
		count := len(n.conns)
		n.mu.Unlock()
		if count == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// listen returns the socket systemd passed (LISTEN_FDS, socket activation)
// or else a new listener at host (all interfaces when empty) and port.
func listen(host string, port int, getenv func(string) string) (net.Listener, error) {
	if getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && getenv("LISTEN_FDS") != "" && getenv("LISTEN_FDS") != "0" {
		f := os.NewFile(3, "LISTEN_FD_3")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("socket from systemd (LISTEN_FDS): %w", err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// sdNotify sends state to systemd if it asked for notifications
// (Type=notify sets NOTIFY_SOCKET).
func sdNotify(getenv func(string) string, state string) {
	addr := getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// envelope is a JSON response body.
type envelope map[string]any

// writeJSON sends data as JSON with status.
func (app *application) writeJSON(w http.ResponseWriter, status int, data any, headers http.Header) error {
	js, err := json.MarshalIndent(data, "", "\t")
	if err != nil {
		return err
	}
	for key, value := range headers {
		w.Header()[key] = value
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(js, '\n'))
	return nil
}

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// errTooLarge marks a body over maxBodyBytes: a 413, not a 400.
var errTooLarge = fmt.Errorf("body must not be larger than %d bytes", maxBodyBytes)

// readJSON decodes the body, one JSON object with no unknown fields, into
// dst, with an error message a client can act on.
func (app *application) readJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var maxBytesError *http.MaxBytesError
		if errors.As(err, &maxBytesError) {
			return errTooLarge
		}
		return fmt.Errorf("reading body: %w", err)
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(body) {
		return errors.New("body must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syntaxError *json.SyntaxError
		var typeError *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntaxError):
			return fmt.Errorf("body contains badly-formed JSON (at character %d)", syntaxError.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("body contains badly-formed JSON")
		case errors.As(err, &typeError):
			if typeError.Field != "" {
				return fmt.Errorf("body contains incorrect JSON type for field %q", typeError.Field)
			}
			return fmt.Errorf("body must be a JSON object (incorrect JSON type at character %d)", typeError.Offset)
		case errors.Is(err, io.EOF):
			return errors.New("body must not be empty")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("body contains unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return err
		}
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("body must only contain a single JSON value")
	}
	return nil
}

// errorResponse sends {"error": message} with status.
func (app *application) errorResponse(w http.ResponseWriter, r *http.Request, status int, message any) {
	if err := app.writeJSON(w, status, envelope{"error": message}, nil); err != nil {
		app.logger.Error("write response", "method", r.Method, "uri", r.URL.RequestURI(), "error", err)
		w.WriteHeader(http.StatusInternalServerError)
	}
}

// serverError logs err once, with the request, and answers a generic 500.
// A database that cannot take writes (a full disk, say), or whose file is
// gone (a new read connection finds an empty one), is a 503 instead.
func (app *application) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if isUnavailable(err) || app.store.checkFile() != nil {
		app.logger.Warn("database unavailable", "method", r.Method, "uri", r.URL.RequestURI(), "error", err)
		w.Header().Set("Retry-After", "5")
		app.errorResponse(w, r, http.StatusServiceUnavailable, "the service cannot store your request right now; try again in a moment")
		return
	}
	app.logger.Error("internal error", "method", r.Method, "uri", r.URL.RequestURI(), "error", err)
	app.errorResponse(w, r, http.StatusInternalServerError, "the server encountered a problem and could not process your request")
}

// badRequest answers 400, or 413 for a body that is too large.
func (app *application) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errTooLarge) {
		app.errorResponse(w, r, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	app.errorResponse(w, r, http.StatusBadRequest, err.Error())
}

// failedValidation answers 422 with a message per field.
func (app *application) failedValidation(w http.ResponseWriter, r *http.Request, errs map[string]string) {
	app.errorResponse(w, r, http.StatusUnprocessableEntity, errs)
}

// validator collects a message per invalid field.
type validator map[string]string

// check records message for key, unless ok or key already has one.
func (v validator) check(ok bool, key, message string) {
	if _, exists := v[key]; !ok && !exists {
		v[key] = message
	}
}

// validateName applies DESIGN.md's rules for a name. It is valid UTF-8
// already: readJSON refuses any other body.
func validateName(v validator, name string) {
	v.check(name != "", "name", "must be provided")
	v.check(len(name) <= 500, "name", "must not be more than 500 bytes long")
	v.check(!strings.ContainsFunc(name, unicode.IsControl), "name", "must not contain control characters")
}

// validateEmail applies DESIGN.md's rules for an address: one plain
// local@domain, in ASCII, with no display name, comment or line break.
func validateEmail(v validator, address string) {
	v.check(address != "", "email", "must be provided")
	v.check(len(address) <= 254, "email", "must not be more than 254 bytes long")
	v.check(!strings.ContainsFunc(address, func(c rune) bool { return c > unicode.MaxASCII || c <= ' ' || c == 0x7f }),
		"email", "must be a plain ASCII address without spaces or control characters")
	parsed, err := mail.ParseAddress(address)
	v.check(err == nil && parsed.Name == "" && parsed.Address == address && strings.Contains(address, "@"),
		"email", "must be a valid email address, like name@example.com")
}

// validatePassword applies DESIGN.md's rules for a password.
func validatePassword(v validator, password string) {
	v.check(password != "", "password", "must be provided")
	v.check(len(password) >= 8, "password", "must be at least 8 bytes long")
	v.check(len(password) <= 72, "password", "must not be more than 72 bytes long")
}

// newToken returns a random activation token and the SHA-256 hash that is
// all the database keeps of it.
func newToken() (plaintext string, hash []byte) {
	b := make([]byte, 16)
	rand.Read(b)
	plaintext = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	sum := sha256.Sum256([]byte(plaintext))
	return plaintext, sum[:]
}

// handleHealthcheck reports that the service is up, and its version.
func (app *application) handleHealthcheck(w http.ResponseWriter, r *http.Request) {
	data := envelope{
		"status": "available",
		"system_info": map[string]string{
			"environment": app.cfg.env,
			"version":     version(),
		},
	}
	if err := app.writeJSON(w, http.StatusOK, data, nil); err != nil {
		app.serverError(w, r, err)
	}
}

// signupInput is what a signup gives, by the API or the form.
type signupInput struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// signup validates a signup and, if it is valid, does what DESIGN.md
// says for the state of the address (store.signup), then starts delivery.
// The answer is the same whoever owns the address, and takes about the
// same time: where no password hash is needed (an activated address, or
// one over its send budget) it waits as long as a hash takes instead,
// without taking a core. It returns a message per invalid field, or an
// error (errBusy when no core is free to hash the password).
func (app *application) signup(ctx context.Context, in signupInput) (validator, error) {
	v := validator{}
	validateName(v, in.Name)
	validateEmail(v, in.Email)
	validatePassword(v, in.Password)
	if len(v) > 0 {
		return v, nil
	}
	activated, over, err := app.store.addressState(ctx, in.Email, app.now())
	if err != nil {
		return nil, err
	}
	var hash []byte
	if over || activated {
		app.imitateHash(ctx)
	} else if hash, err = app.hashPassword(ctx, in.Password); err != nil {
		return nil, err
	}
	now := app.now().UTC()
	u := &user{CreatedAt: now.Truncate(time.Millisecond), Name: in.Name, Email: in.Email, passwordHash: hash}
	token, tokenHash := newToken()
	// The welcome email, composed before the transaction so that the
	// templates do not run while it holds the database's one writer.
	welcome, err := app.compose("welcome", u, token, now)
	if err != nil {
		return nil, err
	}
	kind, err := app.store.signup(ctx, u, tokenHash, func(kind string, to *user) (*email, error) {
		if kind == "welcome" {
			e := *welcome
			e.UserID = to.ID
			return &e, nil
		}
		return app.compose(kind, to, token, now)
	})
	if errors.Is(err, errOverBudget) {
		app.overBudget(in.Email, "signup")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	app.logger.Debug("signup", "user_id", u.ID, "email_kind", kind)
	app.kickDelivery()
	return nil, nil
}

// overBudget logs and counts a request whose email was not sent: its
// address has had its share for now.
func (app *application) overBudget(address, request string) {
	app.metrics.overBudget.Add(1)
	app.logger.Warn("send budget of the address spent: nothing sent, nothing changed", "request", request, "email", address,
		"budget", fmt.Sprintf("%d per hour, %d per day", budgetPerHour, budgetPerDay))
}

// handleSignup signs up a user.
func (app *application) handleSignup(w http.ResponseWriter, r *http.Request) {
	var in signupInput
	if err := app.readJSON(w, r, &in); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := app.signup(r.Context(), in)
	switch {
	case err != nil:
		app.hashError(w, r, err)
	case len(errs) > 0:
		app.failedValidation(w, r, errs)
	default:
		msg := envelope{"message": "check your inbox: an email is on its way with a link to activate your account"}
		if err := app.writeJSON(w, http.StatusAccepted, msg, nil); err != nil {
			app.serverError(w, r, err)
		}
	}
}

// handleActivateUser activates the account that holds the token.
func (app *application) handleActivateUser(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Token string `json:"token"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	invalid := map[string]string{"token": "invalid or expired activation token"}
	if input.Token == "" {
		app.failedValidation(w, r, map[string]string{"token": "must be provided"})
		return
	}
	u, err := app.store.activate(r.Context(), hashToken(input.Token), app.now())
	if errors.Is(err, errNotFound) {
		app.failedValidation(w, r, invalid)
		return
	}
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	if err := app.writeJSON(w, http.StatusOK, envelope{"user": u}, nil); err != nil {
		app.serverError(w, r, err)
	}
}

// mailAddress validates address and, if it is well formed, has queue
// store what goes to it (with a new token, composed on demand), then starts
// delivery. Only a malformed address is an error the caller shows: the
// answer is otherwise the same whoever owns it — an address with no email
// due (errNotFound) or over its send budget included.
func (app *application) mailAddress(ctx context.Context, address, request string, queue func(tokenHash []byte, compose composer) error) (validator, error) {
	v := validator{}
	validateEmail(v, address)
	if len(v) > 0 {
		return v, nil
	}
	now := app.now().UTC()
	token, tokenHash := newToken()
	err := queue(tokenHash, func(kind string, to *user) (*email, error) {
		return app.compose(kind, to, token, now)
	})
	switch {
	case errors.Is(err, errNotFound):
		return nil, nil
	case errors.Is(err, errOverBudget):
		app.overBudget(address, request)
		return nil, nil
	case err != nil:
		return nil, err
	}
	app.kickDelivery()
	return nil, nil
}

// resendActivation sends a new activation link to address if it belongs
// to an account that is not activated yet, replacing its earlier links; for
// any other address it does nothing.
func (app *application) resendActivation(ctx context.Context, address string) (validator, error) {
	return app.mailAddress(ctx, address, "resend", func(tokenHash []byte, compose composer) error {
		return app.store.resend(ctx, address, tokenHash, compose)
	})
}

// handleEmailRequest answers a JSON {"email": …} request that may send an
// email: 202 with message, whoever owns the address.
func (app *application) handleEmailRequest(w http.ResponseWriter, r *http.Request, send func(ctx context.Context, address string) (validator, error), message string) {
	var input struct {
		Email string `json:"email"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := send(r.Context(), input.Email)
	switch {
	case err != nil:
		app.serverError(w, r, err)
	case len(errs) > 0:
		app.failedValidation(w, r, errs)
	default:
		if err := app.writeJSON(w, http.StatusAccepted, envelope{"message": message}, nil); err != nil {
			app.serverError(w, r, err)
		}
	}
}

// handleCreateActivationToken emails a new activation link to an account
// that is not activated yet; it answers the same for any address.
func (app *application) handleCreateActivationToken(w http.ResponseWriter, r *http.Request) {
	app.handleEmailRequest(w, r, app.resendActivation,
		"if an account with this address is waiting for activation, an email is on its way with a new link")
}

// retryEmail composes outbox email id afresh, with a new token where it
// carries one, and queues it to be sent now. It returns the recipient.
func (app *application) retryEmail(ctx context.Context, id int64) (string, error) {
	kind, u, err := app.store.outboxUser(ctx, id)
	if err != nil {
		return "", err
	}
	now := app.now().UTC()
	token, tokenHash := newToken()
	e, err := app.compose(kind, u, token, now)
	if err != nil {
		return "", err
	}
	e.ID = id
	return u.Email, app.store.requeue(ctx, e, tokenHash)
}

// metrics are the counters /debug/vars shows. They belong to one
// application, not to expvar's global registry, so tests can run several.
type metrics struct {
	requests     expvar.Int
	responses    expvar.Map // by status code
	emailsSent   expvar.Int
	emailsFailed expvar.Int
	shed         expvar.Int // signups answered 503: no core free in time
	connsRefused expvar.Int // connections closed at once: past a cap
	connsOpen    expvar.Int
	overBudget   expvar.Int // requests whose email was not sent: the address's budget was spent
	hashes       expvar.Int // bcrypt hashes computed
}

func newMetrics() *metrics {
	m := &metrics{}
	m.responses.Init()
	return m
}

// handleMetrics shows the counters as JSON, in the manner of expvar's
// /debug/vars, to loopback clients only.
func (app *application) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if !app.clientAddr(r).IsLoopback() {
		app.errorResponse(w, r, http.StatusForbidden, "metrics are served to loopback clients only")
		return
	}
	pending, failed, err := app.store.outboxCounts(r.Context())
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	vars := envelope{
		"requests":                  app.metrics.requests.Value(),
		"responses_by_status":       json.RawMessage(app.metrics.responses.String()),
		"background_tasks":          app.tasks.Load(),
		"emails_pending":            pending,
		"emails_failed":             failed,
		"emails_sent":               app.metrics.emailsSent.Value(),
		"emails_failed_since_start": app.metrics.emailsFailed.Value(),
		"signups_shed":              app.metrics.shed.Value(),
		"connections_refused":       app.metrics.connsRefused.Value(),
		"connections_open":          app.metrics.connsOpen.Value(),
		"emails_over_budget":        app.metrics.overBudget.Value(),
		"password_hashes":           app.metrics.hashes.Value(),
		"version":                   version(),
	}
	if err := app.writeJSON(w, http.StatusOK, vars, nil); err != nil {
		app.serverError(w, r, err)
	}
}

// recoverPanic answers 500 to a request whose handler panicked.
func (app *application) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				w.Header().Set("Connection", "close")
				app.serverError(w, r, fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// refuseWhenGone answers 503 to every request once the database file is
// gone, while the service shuts down.
func (app *application) refuseWhenGone(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if app.dbGone.Load() {
			w.Header().Set("Retry-After", "5")
			app.errorResponse(w, r, http.StatusServiceUnavailable, "the service is restarting; try again in a moment")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors lets the browsers of -cors-trusted-origins call the API: their
// requests get the CORS headers, and their preflights an answer.
func (app *application) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !slices.Contains(app.cfg.corsOrigins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses a cross-origin POST, PUT or DELETE from a browser,
// unless its origin is in -cors-trusted-origins, so that no web page can
// make its visitors sign up or send emails: a JSON 403 on the API, a page
// on the pages. Requests without browser headers (curl, servers) pass.
func (app *application) sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := app.crossOrigin.Check(r); err != nil {
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				app.errorResponse(w, r, http.StatusForbidden, "cross-origin request refused")
			} else {
				app.message(w, r, http.StatusForbidden, "Request refused", "This form can only be sent from this site's own pages.")
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countRequests counts requests, and responses by status.
func (app *application) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.metrics.requests.Add(1)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			app.metrics.responses.Add(strconv.Itoa(rec.status), 1)
		}()
		next.ServeHTTP(rec, r)
	})
}

// jsonErrors answers 404 and 405 (with Allow) in JSON instead of the
// ServeMux's plain text.
func (app *application) jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			app.errorResponse(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("the %s method is not supported for this resource", r.Method))
		case http.StatusNotFound:
			app.errorResponse(w, r, http.StatusNotFound, "the requested resource could not be found")
		default: // a redirect to the clean path
			h.ServeHTTP(w, r)
		}
	})
}

// headerProbe records what the ServeMux's own error handler would send.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }
