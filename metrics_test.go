package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeFrom fetches /metrics from the loopback address from (a 127/8
// address) and returns its raw text, failing unless it is 200.
func scrapeFrom(t testing.TB, url, from string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	defer client.CloseIdleConnections()
	res, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics from %s: %d\n%s", from, res.StatusCode, body)
	}
	return string(body)
}

// series parses a scrape into its samples, keyed as name{label="value",…}
// with the labels sorted: counters, gauges, and a histogram's _count and
// _sum.
func series(t testing.TB, text string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			key := name + labelsOf(m)
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[key] = m.Untyped.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+labelsOf(m)] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+labelsOf(m)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// scrape is series of app's /metrics, read in process.
func scrape(t testing.TB, app *testApp) map[string]float64 {
	t.Helper()
	return series(t, scrapeFrom(t, app.url, "127.0.0.1"))
}

// TestAlertRules: Prometheus' own promtool accepts deploy/alerts.yml and
// passes deploy/alerts_test.yml (the stuck-email alert fires on an email
// that stays pending and not on one that drains).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := needTool(t, "promtool", "prometheus")
	if out, err := exec.Command(promtool, "check", "rules", "deploy/alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = "deploy"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// TestMetricsCountWhatHappened drives every outcome the metrics count —
// signups accepted, invalid and shed; logins ok, failed and throttled;
// an email refused once (451) then sent, one refused for good (550);
// webhooks delivered, retried and failed; budgets spent; connections
// refused — then checks the counts against what happened, and that
// promtool check metrics accepts the scrape.
func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	promtool := needTool(t, "promtool", "prometheus")
	srv := startSMTP(t, func(s *testSMTP) {
		s.data = func(n int64, c *smtp.Conn) error {
			if n == 1 {
				return tempFail // the first email: 451, then 250
			}
			return nil
		}
		s.rcptTo = func(to string) error {
			if strings.HasPrefix(to, "bounce") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	})
	var hookFails atomic.Int64
	r := startReceiver(t, func(n int, d delivery) int {
		if d.event.Data.Email == "refused@example.com" {
			hookFails.Add(1)
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	app := newTestApp(t, srv, func(cfg *config) {
		webhookArgs(r)(cfg)
		cfg.maxConnsPerIP = 4
	})
	base, _ := serveTestApp(t, app)

	const n = 5
	for i := range n {
		signup(t, base, fmt.Sprintf("m%d@example.com", i))
	}
	post(t, "POST", base+"/v1/users", map[string]string{"name": "X", "email": "not an address", "password": "pa55word1234"})
	for range cap(app.hasher.slots) { // every core busy: the next signup is shed
		app.hasher.slots <- struct{}{}
	}
	if status, _ := post(t, "POST", base+"/v1/users", map[string]string{"name": "X", "email": "shed@example.com", "password": "pa55word1234"}); status != 503 {
		t.Errorf("with every slot held, a signup: %d, want 503", status)
	}
	for range cap(app.hasher.slots) {
		<-app.hasher.slots
	}
	waitFor(t, 10*time.Second, "the five welcome emails", func() bool { return len(srv.messages()) == n })
	activate(t, base, srv.messages()[0])
	login(t, base, srv.messages()[0].to, "pa55word1234")
	for range maxFailedLogins + 1 {
		login(t, base, srv.messages()[0].to, "wrong-password")
	}
	signup(t, base, "bounce@example.com")
	signup(t, base, "refused@example.com")
	waitFor(t, 10*time.Second, "the refused webhook to be tried", func() bool { return hookFails.Load() > 0 })
	signup(t, base, "flood@example.com")
	for range 3 { // the flood: a welcome and two new links, then the budget
		post(t, "POST", base+"/v1/tokens/activation", map[string]string{"email": "flood@example.com"})
	}
	// Past 72 hours: the refused webhook fails for good at its next try.
	app.setClock(func() time.Time { return time.Now().Add(giveUpAfter + time.Hour) })
	waitFor(t, 20*time.Second, "the webhook given up", func() bool {
		return scrape(t, app)[`signup_outbox_deliveries_total{channel="webhook",kind="user.created",result="failed"}`] == 1
	})
	var conns []net.Conn
	for range 5 { // past -max-conns-per-client
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err == nil {
			conns = append(conns, c)
		}
	}
	waitFor(t, 10*time.Second, "a refused connection counted", func() bool {
		return scrapeFromFresh(t, base)["signup_connections_refused_total"] >= 1
	})
	for _, c := range conns {
		c.Close()
	}

	text := scrapeFrom(t, base, "127.0.0.2")
	m := series(t, text)
	for key, want := range map[string]float64{
		`signup_signups_total{outcome="accepted"}`:                                              n + 3,
		`signup_signups_total{outcome="invalid"}`:                                               1,
		`signup_signups_total{outcome="shed"}`:                                                  1,
		`signup_logins_total{result="ok"}`:                                                      1,
		`signup_logins_total{result="failed"}`:                                                  maxFailedLogins,
		`signup_logins_total{result="throttled"}`:                                               1,
		`signup_outbox_deliveries_total{channel="email",kind="unsolicited",result="retried"}`:   1,
		`signup_outbox_deliveries_total{channel="email",kind="unsolicited",result="failed"}`:    1,
		`signup_smtp_replies_total{class="4xx"}`:                                                1,
		`signup_smtp_replies_total{class="5xx"}`:                                                1,
		`signup_outbox_deliveries_total{channel="webhook",kind="user.created",result="failed"}`: 1,
		`signup_outbox_deliveries_total{channel="webhook",kind="user.activated",result="sent"}`: 1,
		`signup_over_budget_total{budget="address"}`:                                            1,
		`signup_outbox_failed{channel="email"}`:                                                 1,
		`signup_outbox_failed{channel="webhook"}`:                                               1,
		`signup_http_requests_total{code="202",route="POST /v1/users"}`:                         n + 3,
		`signup_http_requests_total{code="503",route="POST /v1/users"}`:                         1,
		`signup_http_request_duration_seconds_count{route="POST /v1/tokens/authentication"}`:    maxFailedLogins + 2,
		`signup_build_info{goversion="` + runtime.Version() + `",version="` + version() + `"}`:  1,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	// Sent, under one label: the welcome emails but the bounce (one of them
	// after its 451), and the two resends within the flooded address's budget.
	waitFor(t, 10*time.Second, "every unsolicited email sent", func() bool {
		return scrape(t, app)[`signup_outbox_deliveries_total{channel="email",kind="unsolicited",result="sent"}`] == n+2+2
	})
	if m[`signup_bcrypt_slot_wait_seconds_count`] == 0 || m["go_goroutines"] == 0 || m["process_resident_memory_bytes"] == 0 {
		t.Error("the slot wait, the Go runtime or the process figures are missing")
	}
	for key := range m {
		if strings.Contains(key, "@") || strings.Contains(key, "example.com") {
			t.Errorf("a label holds an address: %s", key)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// scrapeFromFresh scrapes from an address of its own, for a test that
// holds the capped client's connections open.
func scrapeFromFresh(t *testing.T, base string) map[string]float64 {
	t.Helper()
	return series(t, scrapeFrom(t, base, "127.0.0.3"))
}

func TestMetricsOnlyForLoopback(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		cfg.metricsAllow = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	})
	h := app.routes()
	get := func(remote, forwarded string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = remote
		if forwarded != "" {
			r.Header.Set("X-Forwarded-For", forwarded)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	for name, c := range map[string][2]string{
		"a remote client":                         {"192.0.2.7:1234", ""},
		"a remote client behind a trusted proxy":  {"10.0.0.1:1234", "192.0.2.7"},
		"a remote client forging X-Forwarded-For": {"192.0.2.7:1234", "127.0.0.1"},
		"a client behind a proxy on loopback":     {"127.0.0.1:1234", "192.0.2.7"},
		"an allowed address's forwarded client":   {"10.9.0.5:1234", "192.0.2.7"},
	} {
		if rec := get(c[0], c[1]); rec.Code != 404 || rec.Body.String() != get("192.0.2.7:1234", "").Body.String() {
			t.Errorf("%s: %d %s, want the 404 of any unknown path", name, rec.Code, rec.Body)
		}
	}
	if rec := get("10.9.0.5:1234", ""); rec.Code != 200 {
		t.Errorf("a -metrics-allow address: %d", rec.Code)
	}
	if rec := get("127.0.0.1:1234", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), "signup_build_info") {
		t.Fatalf("loopback: %d", rec.Code)
	}
}

// TestMetricsRefuseEveryProxiedRequest: a request carrying any line of any
// forwarded-client header — an empty one a client sent, to which HAProxy's
// `option forwardfor` appends its own, or another spelling — came through
// a proxy, and gets the 404 of any unknown path, even from loopback.
func TestMetricsRefuseEveryProxiedRequest(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	h := app.routes()
	get := func(header http.Header) int {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header = header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for _, header := range []http.Header{
		{"X-Forwarded-For": {"", "127.0.0.1"}},
		{"X-Forwarded-For": {""}},
		{"X-Client-Ip": {"192.0.2.7"}},
		{"True-Client-Ip": {"192.0.2.7"}},
		{"Cf-Connecting-Ip": {"192.0.2.7"}},
		{"X-Real-Ip": {"192.0.2.7"}},
		{"Forwarded": {"for=192.0.2.7"}},
	} {
		if code := get(header); code != http.StatusNotFound {
			t.Errorf("%v from loopback: %d, want 404", header, code)
		}
	}
	if code := get(http.Header{}); code != http.StatusOK {
		t.Errorf("loopback without a forwarded header: %d, want 200", code)
	}
}

// TestMetricsAddr: with -metrics-addr, /metrics is served on that listener
// of its own, and the main listener answers it 404.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startRun(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), "-metrics-addr", addr)...), nil)
	res, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with -metrics-addr: %d, want 404", res.StatusCode)
	}
	if m := series(t, scrapeFrom(t, "http://"+addr, "127.0.0.1")); m["signup_outbox_failed{channel=\"email\"}"] != 0 || len(m) < 10 {
		t.Errorf("/metrics on -metrics-addr: %d series", len(m))
	}
}

// TestMetricsTellNoAddressState: the delivery counters and the pending
// gauge count a signup of a new address and of an activated one (a
// welcome, an account-exists email), and a reset of a pending and of an
// activated account, under one label.
func TestMetricsTellNoAddressState(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedAccount(t, app, srv, "ada@example.com")
	before := scrape(t, app)
	key := `signup_outbox_deliveries_total{channel="email",kind="unsolicited",result="sent"}`
	signup(t, app.url, "ada@example.com") // account exists
	signup(t, app.url, "bob@example.com") // welcome
	// Counted once each is recorded as sent, a moment after the server took it.
	var after map[string]float64
	waitFor(t, 10*time.Second, "both emails counted as sent", func() bool {
		after = scrape(t, app)
		return after[key]-before[key] >= 2
	})
	for series := range after {
		if strings.Contains(series, `kind="welcome"`) || strings.Contains(series, `kind="account-exists"`) ||
			strings.Contains(series, `kind="activation"`) || strings.Contains(series, `kind="password-reset"`) {
			t.Errorf("a label tells the kinds a stranger can cause apart: %s", series)
		}
	}
	if after[key]-before[key] != 2 {
		t.Errorf("%s rose by %v, want 2", key, after[key]-before[key])
	}
}
