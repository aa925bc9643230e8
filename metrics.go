package main

// metrics.go holds the counters and the /debug/vars handler that shows them.

import (
	"encoding/json"
	"expvar"
	"net/http"
	"net/netip"
	"runtime"
)

// metrics are the counters /debug/vars shows. They belong to one
// application, not to expvar's global registry, so tests can run several.
type metrics struct {
	requests     expvar.Int
	responses    expvar.Map // by status code
	emailsSent   expvar.Int
	emailsFailed expvar.Int
	hooksSent    expvar.Int // webhooks delivered
	hooksFailed  expvar.Int
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
	if !servedLocally(r) {
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
		"goroutines":                runtime.NumGoroutine(),
		"version":                   version(),
	}
	app.writeJSON(w, r, http.StatusOK, vars)
}

// servedLocally reports whether r came over a connection from this machine
// and not through a proxy: judged by the connection's own address, never
// X-Forwarded-For, and refusing any request that names a forwarded client
// (a reverse proxy on loopback forwards everyone's).
func servedLocally(r *http.Request) bool {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !peer.Addr().Unmap().IsLoopback() {
		return false
	}
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	return true
}
