package main

// metrics.go is what operators watch: the Prometheus metrics, from the
// Prometheus client library, served at /metrics to loopback and
// -metrics-allow connections only. Every label value comes from a fixed
// set: a route pattern, a status code, a kind; never an address, a name,
// a token or a raw path.

import (
	"context"
	"expvar"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one application's, in a registry of its own (tests run
// several applications in one process).
type metrics struct {
	registry *prometheus.Registry

	requests     *prometheus.CounterVec   // route, code
	duration     *prometheus.HistogramVec // route
	signups      *prometheus.CounterVec   // outcome
	logins       *prometheus.CounterVec   // result
	oidcAuths    *prometheus.CounterVec   // client, result
	oidcTokens   *prometheus.CounterVec   // client, result
	deliveries   *prometheus.CounterVec   // channel, kind, result
	smtpReplies  *prometheus.CounterVec   // class
	webhookReply *prometheus.CounterVec   // class
	overBudget   *prometheus.CounterVec   // budget
	slotWait     prometheus.Histogram
	connsOpen    prometheus.Gauge
	connsRefused prometheus.Counter

	handler http.Handler // /metrics, for allowed connections (watch makes it)

	// Not served: it rises for a known login and not for an unknown one.
	hashes expvar.Int
}

// newMetrics makes the metrics and registers them, with the Go runtime's,
// the process's and the build's.
func newMetrics() *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	auto := promauto.With(m.registry)
	m.requests = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_http_requests_total",
		Help: "HTTP requests by route pattern and status code."}, []string{"route", "code"})
	m.duration = auto.NewHistogramVec(prometheus.HistogramOpts{Name: "signup_http_request_duration_seconds",
		Help: "Time to answer an HTTP request, by route pattern.", Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
		[]string{"route"})
	m.signups = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_signups_total",
		Help: "Signups by outcome: accepted (202), invalid (422), refused by -signup (closed: 403; invite: an address not invited, answered as any), shed (503, no core free in time), error."}, []string{"outcome"})
	m.logins = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_logins_total",
		Help: "Logins by result: ok, failed (401), disabled (the right password of a disabled account: 403), second_step (the right password; a code is asked for), code_failed (a wrong or used code), throttled (429)."}, []string{"result"})
	m.oidcAuths = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_oidc_authorizations_total",
		Help: "OpenID Connect authorizations by client id and result: code (a code issued), login (sent to log in), consent (asked), denied, login_required."}, []string{"client", "result"})
	m.oidcTokens = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_oidc_tokens_total",
		Help: "OpenID Connect tokens by client id and result: issued, code_reused, refresh_reused."}, []string{"client", "result"})
	m.deliveries = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_outbox_deliveries_total",
		Help: "Attempts at outbox rows by channel (email, webhook), kind and result: sent, retried (a retry is scheduled), failed (for good)."},
		[]string{"channel", "kind", "result"})
	m.smtpReplies = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_smtp_replies_total",
		Help: "Outcomes of email attempts by the SMTP server's reply class: 2xx, 4xx, 5xx, or none (unreachable, dropped, timed out)."},
		[]string{"class"})
	m.webhookReply = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_webhook_responses_total",
		Help: "Outcomes of webhook attempts by the receiver's status class: 2xx, 3xx, 4xx, 5xx, or none (unreachable, dropped, silent past 10 s)."},
		[]string{"class"})
	m.overBudget = auto.NewCounterVec(prometheus.CounterOpts{Name: "signup_over_budget_total",
		Help: "Requests whose email was not sent, or changes refused, for a spent budget: address (3 an hour, 10 a day) or client (-limiter-emails-per-hour)."},
		[]string{"budget"})
	m.slotWait = auto.NewHistogram(prometheus.HistogramOpts{Name: "signup_bcrypt_slot_wait_seconds",
		Help:    "Time a request waited for a bcrypt slot (one per core); past a second it is shed with 503.",
		Buckets: []float64{.001, .01, .05, .1, .25, .5, .75, 1}})
	m.connsOpen = auto.NewGauge(prometheus.GaugeOpts{Name: "signup_connections_open", Help: "HTTP connections open."})
	m.connsRefused = auto.NewCounter(prometheus.CounterOpts{Name: "signup_connections_refused_total",
		Help: "HTTP connections closed at once, past -max-conns or -max-conns-per-client."})
	build := auto.NewGaugeVec(prometheus.GaugeOpts{Name: "signup_build_info", Help: "The build: always 1."},
		[]string{"version", "goversion"})
	build.WithLabelValues(version(), runtime.Version()).Set(1)
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every series of a fixed set exists from the start, at 0: a rate or an
	// alert never waits for a first event.
	for _, o := range []string{"accepted", "invalid", "refused", "shed", "error"} {
		m.signups.WithLabelValues(o)
	}
	for _, r := range []string{"ok", "failed", "disabled", "second_step", "code_failed", "throttled"} {
		m.logins.WithLabelValues(r)
	}
	for _, b := range []string{"address", "client"} {
		m.overBudget.WithLabelValues(b)
	}
	for _, c := range []string{"2xx", "4xx", "5xx", "none"} {
		m.smtpReplies.WithLabelValues(c)
		m.webhookReply.WithLabelValues(c)
	}
	for channel, kinds := range outboxKinds() {
		for _, k := range kinds {
			for _, r := range []string{"sent", "retried", "failed"} {
				m.deliveries.WithLabelValues(channel, k, r)
			}
		}
	}
	return m
}

// outboxKinds are the kind labels of each channel's outbox rows
// (metricKind).
func outboxKinds() map[string][]string {
	var emails, events []string
	for k := range emailKinds {
		if l := metricKind(string(k)); !slices.Contains(emails, l) {
			emails = append(emails, l)
		}
	}
	slices.Sort(emails)
	for _, e := range eventTypes {
		events = append(events, string(e))
	}
	return map[string][]string{channelEmail: emails, channelWebhook: events}
}

// outboxCollector reads the outbox when scraped: pending rows by channel
// and kind, the age of the oldest pending row, and rows failed for good —
// from the database, so true on every instance and after a restart.
type outboxCollector struct {
	store   *store
	now     func() time.Time
	pending *prometheus.Desc
	oldest  *prometheus.Desc
	failed  *prometheus.Desc
	tasks   func() int64
	running *prometheus.Desc
	// Accounts only the operator's acts change: a stranger's signup moves
	// neither, so neither tells whether an address has an account.
	disabled *prometheus.Desc
	invited  *prometheus.Desc
}

func newOutboxCollector(st *store, now func() time.Time, tasks func() int64) *outboxCollector {
	return &outboxCollector{store: st, now: now, tasks: tasks,
		pending:  prometheus.NewDesc("signup_outbox_pending", "Outbox rows waiting to go out, by channel and kind (read from the database).", []string{"channel", "kind"}, nil),
		oldest:   prometheus.NewDesc("signup_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row of each channel; 0 when none is pending.", []string{"channel"}, nil),
		failed:   prometheus.NewDesc("signup_outbox_failed", "Outbox rows failed for good, by channel: `signup outbox list -status failed` shows them.", []string{"channel"}, nil),
		running:  prometheus.NewDesc("signup_background_tasks", "Background tasks running (deliveries), which shutdown waits for.", nil, nil),
		disabled: prometheus.NewDesc("signup_accounts_disabled", "Accounts the operator disabled (`signup users disable`; read from the database).", nil, nil),
		invited:  prometheus.NewDesc("signup_invitations_open", "Invitations not yet taken up: invited accounts still pending (read from the database).", nil, nil),
	}
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.oldest
	ch <- c.failed
	ch <- c.running
	ch <- c.disabled
	ch <- c.invited
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(c.tasks()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := c.store.outboxStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	now := c.now()
	for channel, kinds := range outboxKinds() {
		for _, k := range kinds {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(stats.pending[[2]string{channel, k}]), channel, k)
		}
		age := 0.0
		if t, ok := stats.oldest[channel]; ok {
			age = max(0, now.Sub(t).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, channel)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(stats.failed[channel]), channel)
	}
	disabled, invited, err := c.store.operatorCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.disabled, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.disabled, prometheus.GaugeValue, float64(disabled))
	ch <- prometheus.MustNewConstMetric(c.invited, prometheus.GaugeValue, float64(invited))
}

// handleMetrics serves the metrics to a connection from loopback or from
// -metrics-allow, and the 404 of any unknown path to every other — on the
// main listener only when there is no -metrics-addr.
func (app *application) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if app.cfg.metricsAddr != "" || !app.metricsAllowed(r) {
		app.errorResponse(w, r, http.StatusNotFound, "the requested resource could not be found")
		return
	}
	app.metrics.handler.ServeHTTP(w, r)
}

// metricsServer is the server of -metrics-addr: /metrics alone, to
// connections from loopback or -metrics-allow.
func (app *application) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if !app.metricsAllowed(r) {
			http.NotFound(w, r)
			return
		}
		app.metrics.handler.ServeHTTP(w, r)
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(app.logger.Handler(), slog.LevelWarn)}
}

// forwardedHeaders are the spellings of a forwarded client that proxies
// send, canonical: a request carrying any line of one came through a proxy.
var forwardedHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip"}

// metricsAllowed reports whether r came over a connection from loopback or
// a -metrics-allow address, and not through a proxy: judged by the
// connection's own address, never X-Forwarded-For, and refusing a request
// that carries any forwarded-client header (a reverse proxy on loopback
// forwards everyone's, and some append to an empty line a client sent).
func (app *application) metricsAllowed(r *http.Request) bool {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	for _, h := range forwardedHeaders {
		if _, ok := r.Header[h]; ok { // any line of it, even an empty one
			return false
		}
	}
	addr := peer.Addr().Unmap()
	return addr.IsLoopback() || slices.ContainsFunc(app.cfg.metricsAllow, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// watch makes the /metrics handler of m's registry, with the outbox of st
// and the count of background tasks read at each scrape.
func (m *metrics) watch(st *store, now func() time.Time, tasks func() int64) {
	m.registry.MustRegister(newOutboxCollector(st, now, tasks))
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
