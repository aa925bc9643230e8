package main

// server.go is the HTTP server and its life: listening (systemd sockets
// included), serve() with the shutdown sequence, and background().

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// application is the wiring: the configuration and the parts that serve
// requests. Each piece of machinery with a life of its own is a type of
// its own (the outbox, the hasher), and every goroutine that outlives a
// request is started by background below.
type application struct {
	cfg       config
	logger    *slog.Logger
	store     *store
	outbox    *outbox
	hasher    *hasher
	templates *templates
	metrics   *metrics
	limiter   *limiter         // nil when -limiter-enabled=false
	now       func() time.Time // the clock; tests replace it

	wg    sync.WaitGroup // the background tasks, which shutdown waits for
	tasks tasks
}

// tasks is what background hands its tasks, and the count of them.
type tasks struct {
	running  atomic.Int64       // tasks running, for the log and /metrics
	ctx      context.Context    // handed to every task
	cancel   context.CancelFunc // cancels ctx: at the shutdown deadline
	stopping chan struct{}      // closed when shutdown begins to wait: the chores end (every)
}

// background runs fn in a goroutine that shutdown waits for: every
// delivery, sweep, claim renewal and chore goes through it. fn's context
// is cancelled when the shutdown deadline passes; a panic is logged, never
// fatal.
func (app *application) background(fn func(ctx context.Context)) {
	app.tasks.running.Add(1)
	app.wg.Go(func() {
		defer app.tasks.running.Add(-1)
		defer func() {
			if p := recover(); p != nil {
				app.logger.Error("background task panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}()
		fn(app.tasks.ctx)
	})
}

// drainBackground is the second step of shutdown: the outbox claims
// nothing more, the chores stop, and the background tasks running are
// waited for until deadline. Past it their context is cancelled (sends cut
// their connection and release their rows) and it waits a moment more for
// that. It returns how many tasks were still running at the deadline: 0
// when all finished.
func (app *application) drainBackground(deadline context.Context) (left int64) {
	defer app.tasks.cancel()
	app.outbox.stop()
	select {
	case <-app.tasks.stopping:
	default:
		close(app.tasks.stopping)
	}
	idle := make(chan struct{})
	go func() {
		app.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return 0
	case <-deadline.Done():
	}
	left = app.tasks.running.Load()
	app.tasks.cancel()
	select {
	case <-idle:
	case <-time.After(2 * time.Second):
	}
	return left
}

// newApplication wires the dependencies together. m may be nil for a
// command that only queues emails (outbox retry).
func newApplication(cfg config, logger *slog.Logger, st *store, m *mailer, t *templates) *application {
	ctx, cancel := context.WithCancel(context.Background())
	metrics := newMetrics()
	app := &application{
		cfg:       cfg,
		logger:    logger,
		store:     st,
		hasher:    newHasher(cfg.bcryptCost, metrics),
		templates: t,
		metrics:   metrics,
		now:       time.Now,
		tasks:     tasks{ctx: ctx, cancel: cancel, stopping: make(chan struct{})},
	}
	var emails sender
	if m != nil {
		emails = m
	}
	// The application's clock, read at each call: tests replace it.
	now := func() time.Time { return app.now() }
	app.outbox = newOutbox(cfg, st, emails, logger, metrics, now, app.background)
	if st != nil {
		st.composer, st.logger = newComposer(cfg, t), logger
		metrics.watch(st, now, app.tasks.running.Load)
	}
	if cfg.limiterEnabled {
		app.limiter = newLimiter(rate.Limit(cfg.limiterRPS), cfg.limiterBurst, cfg.limiterEmails)
		if st != nil {
			st.perDomain = domainPerHour
		}
	}
	return app
}

// serve answers HTTP on ln until ctx is cancelled or SIGINT or SIGTERM
// arrives, then shuts down: requests first, then background tasks, both
// within -shutdown-timeout (docs/running.md, "Stopping it"). A second signal while
// draining returns at once.
func (app *application) serve(ctx context.Context, ln net.Listener, getenv func(string) string) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var metricsLn net.Listener
	if app.cfg.metricsAddr != "" {
		var err error
		if metricsLn, err = net.Listen("tcp", app.cfg.metricsAddr); err != nil {
			return fmt.Errorf("-metrics-addr: %w", err)
		}
		defer metricsLn.Close()
	}
	if err := app.outbox.start(ctx); err != nil {
		return err
	}

	var fresh newConns
	capped := &capListener{Listener: ln, max: app.cfg.maxConns, perClient: app.cfg.maxConnsPerIP,
		exempt: app.trusted, metrics: app.metrics, open: map[netip.Addr]int{}, idle: map[*cappedConn]time.Time{}}
	srv := &http.Server{
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(app.logger.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, state http.ConnState) {
			fresh.track(c, state)
			capped.track(c, state)
		},
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(capped) }()
	app.logger.Info("starting server", "addr", ln.Addr().String(), "env", app.cfg.env, "version", version())
	if metricsLn != nil {
		metricsSrv := app.metricsServer()
		go metricsSrv.Serve(metricsLn)
		defer metricsSrv.Close()
		app.logger.Info("serving metrics", "addr", metricsLn.Addr().String())
	}
	sdNotify(getenv, "READY=1")

	lost := make(chan error, 1)
	app.background(func(ctx context.Context) { app.every(ctx, time.Second, func() { app.watchDatabase(lost) }) })
	app.background(func(ctx context.Context) {
		app.every(ctx, min(time.Second, app.cfg.checkpointInterval), app.housekeeping())
	})

	var lostErr error
	select {
	case err := <-serveErr:
		app.tasks.cancel()
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
		app.tasks.cancel()
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

	app.logger.Info("completing background tasks", "tasks", app.tasks.running.Load())
	if left := app.drainBackground(deadline); left > 0 {
		emails, webhooks := app.pendingForLog()
		app.logger.Error("shutdown deadline passed", "timeout", app.cfg.shutdownTimeout.String(), "tasks_left", left,
			"emails_pending", emails, "webhooks_pending", webhooks)
		return fmt.Errorf("shutdown deadline of %v passed with %d background tasks running; %v emails and %v webhooks stay pending for the next start",
			app.cfg.shutdownTimeout, left, emails, webhooks)
	}
	emails, webhooks := app.pendingForLog()
	if httpErr != nil {
		app.logger.Error("shutdown deadline passed while requests were in flight", "error", httpErr)
		return fmt.Errorf("shutdown: %w", httpErr)
	}
	app.logger.Info("stopped server", "emails_pending", emails, "webhooks_pending", webhooks, "took", time.Since(start).String())
	return nil
}

// lastWordsTimeout bounds each step of shutdown that needs the database
// after the work is done (counting what stays pending; releasing claims,
// deliverer.releaseClaims): with the database away they are skipped with a
// warning, not waited for.
const lastWordsTimeout = 2 * time.Second

// pendingForLog counts the emails and the webhooks that stay pending, for
// the last lines of the log: "unknown", with a warning, when the database
// cannot say so within lastWordsTimeout. A shutdown that finished its own
// work does not fail for it.
func (app *application) pendingForLog() (emails, webhooks any) {
	ctx, cancel := context.WithTimeout(context.Background(), lastWordsTimeout)
	defer cancel()
	pending, err := app.store.pendingByChannel(ctx)
	if err != nil {
		app.logger.Warn("could not count the pending emails: the database is unavailable", "error", err)
		return "unknown", "unknown"
	}
	return pending[channelEmail], pending[channelWebhook]
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
