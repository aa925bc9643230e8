package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// testSecret is the webhook secret of the tests.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// delivery is one request a test receiver got.
type delivery struct {
	id, timestamp string
	event         webhookEvent
	body          string
	status        int // what the receiver answered
}

// receiver is an app's webhook endpoint: it verifies every request's
// signature with the Standard Webhooks reference library (a request that
// fails is a test error) and answers what answer says for the nth request
// (from 1), 204 when answer is nil.
type receiver struct {
	t        testing.TB
	url      string
	answer   func(n int, d delivery) int
	mu       sync.Mutex
	got      []delivery
	wh       *standardwebhooks.Webhook
	arrivals atomic.Int64 // requests begun
}

func startReceiver(t testing.TB, answer func(n int, d delivery) int) *receiver {
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, answer: answer, wh: wh}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks/signup"
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.arrivals.Add(1)
	body, _ := io.ReadAll(req.Body)
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.t.Errorf("a webhook whose signature does not verify: %v\n%s", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	d := delivery{id: req.Header.Get("webhook-id"), timestamp: req.Header.Get("webhook-timestamp"), body: string(body)}
	if err := json.Unmarshal(body, &d.event); err != nil {
		r.t.Errorf("a webhook body that is not JSON: %q", body)
	}
	r.mu.Lock()
	n := len(r.got) + 1
	r.mu.Unlock()
	d.status = http.StatusNoContent
	if r.answer != nil {
		d.status = r.answer(n, d)
	}
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	if d.status == dropConnection {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(d.status)
}

// dropConnection, as a receiver's answer, closes the connection unanswered.
const dropConnection = -1

// delivered is the events answered 2xx, in order of arrival.
func (r *receiver) delivered() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.status >= 200 && d.status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// waitEvent waits for a delivered event of typ about address, and returns it.
func (r *receiver) waitEvent(typ eventType, address string) delivery {
	r.t.Helper()
	var found delivery
	waitFor(r.t, 15*time.Second, "the "+string(typ)+" webhook about "+address, func() bool {
		for _, d := range r.delivered() {
			if d.event.Type == typ && d.event.Data.Email == address {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// webhookArgs configures an application for the receiver r.
func webhookArgs(r *receiver) func(cfg *config) {
	return func(cfg *config) {
		cfg.webhookURL, cfg.webhookSecret = r.url, testSecret
		cfg.webhookKey, _ = parseWebhookSecret(testSecret)
	}
}

// TestWebhookSignature: the signature is the spec's, by its own test vector.
func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	key, err := parseWebhookSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := signWebhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature %s, want %s", got, want)
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := parseWebhookSecret(bad); err == nil {
			t.Errorf("secret %q accepted", bad)
		}
	}
}

// TestWebhooksForEveryChange, on both engines: every account change is a
// webhook, signed, with the account's data and never a hash or a token;
// user.deleted arrives although the account is gone.
func TestWebhooksForEveryChange(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, nil)
			r := startReceiver(t, nil)
			app := newTestApp(t, srv, func(cfg *config) { cfg.db = newDB(t); webhookArgs(r)(cfg) })
			testWebhooksForEveryChange(t, app, srv, r)
		})
	}
}

func testWebhooksForEveryChange(t *testing.T, app *testApp, srv *testSMTP, r *receiver) {
	clock := newClock(time.Now())
	app.setClock(clock.now) // an hour on before the deletion: each address gets 3 emails an hour
	signup(t, app.url, "ada@example.com")
	created := r.waitEvent(eventCreated, "ada@example.com")
	welcome := waitFor1(t, srv, "ada@example.com", "Activate")
	activate(t, app.url, welcome)
	activated := r.waitEvent(eventActivated, "ada@example.com")
	if created.event.Data.Activated || !activated.event.Data.Activated || created.event.Data.ID != activated.event.Data.ID || created.event.Data.Name != "Test User" {
		t.Errorf("created %+v, activated %+v", created.event.Data, activated.event.Data)
	}
	_, _, token := login(t, app.url, "ada@example.com", "pa55word1234")
	bearerDo(t, "PUT", app.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"})
	r.waitEvent(eventPasswordChanged, "ada@example.com")
	bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": "ada@new.example", "current_password": "new-password-1"})
	for _, to := range []string{"ada@example.com", "ada@new.example"} {
		post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": confirmLink(t, waitFor1(t, srv, to, "Confirm"))})
	}
	r.waitEvent(eventEmailChanged, "ada@new.example")
	waitFor1(t, srv, "ada@example.com", "has a new email address") // the owner's allowance has room for it
	reset := askReset(t, app, srv, "ada@new.example")
	post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": tokenOf(t, reset.data), "password": "new-password-2"})
	waitFor(t, 15*time.Second, "the reset's user.password_changed", func() bool {
		n := 0
		for _, d := range r.delivered() {
			if d.event.Type == eventPasswordChanged {
				n++
			}
		}
		return n == 2
	})
	clock.add(time.Hour)
	_, _, token = login(t, app.url, "ada@new.example", "new-password-2")
	if status, _ := bearerDo(t, "DELETE", app.url+"/v1/users/me", token, map[string]string{"current_password": "new-password-2"}); status != 204 {
		t.Fatal(status)
	}
	deleted := r.waitEvent(eventDeleted, "ada@new.example")
	if deleted.event.Data.ID != created.event.Data.ID {
		t.Errorf("user.deleted names %d, want %d", deleted.event.Data.ID, created.event.Data.ID)
	}

	// "This wasn't me" deletes a pending signup: user.deleted too.
	signup(t, app.url, "notme@example.com")
	link := tokenOf(t, waitFor1(t, srv, "notme@example.com", "Activate").data)
	if status, page := form(t, app.url, "/activate", url.Values{"token": {link}, "action": {"cancel"}}); status != 200 {
		t.Fatalf("This wasn't me: %d\n%s", status, page)
	}
	r.waitEvent(eventDeleted, "notme@example.com")

	var secrets []string
	for _, m := range srv.messages() {
		if _, tok := linkOfMaybe(m.data); tok != "" {
			secrets = append(secrets, tok)
		}
	}
	secrets = append(secrets, token)
	for _, d := range r.delivered() {
		if d.event.Timestamp.IsZero() || !strings.HasPrefix(d.id, "msg_") || d.event.Timestamp.Location() != time.UTC {
			t.Errorf("a webhook without its id or timestamp: %s %s", d.id, d.body)
		}
		for _, s := range append(secrets, "hash", "token", "pa55word1234", "new-password-1", "new-password-2") {
			if strings.Contains(d.body, s) {
				t.Errorf("a webhook body holds %q: %s", s, d.body)
			}
		}
	}
	var rows, withUser int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*), count(user_id) FROM outbox WHERE channel = 'webhook'`), &rows, &withUser)
	if rows != 8 || withUser != 0 {
		t.Errorf("%d webhook rows (%d with a user), want 8 rows outliving their accounts", rows, withUser)
	}
	if n := len(r.delivered()); n != 8 {
		t.Errorf("%d webhooks delivered, want 8", n)
	}
}

// linkOfMaybe is linkOf for a message that may have no token.
func linkOfMaybe(msg []byte) (string, string) {
	m := linkRE.FindStringSubmatch(strings.ReplaceAll(string(msg), "=\r\n", ""))
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// TestWebhookRetried: a receiver that answers 500 twice, then 200, gets the
// event each time with the same webhook-id, and it is delivered once.
func TestWebhookRetried(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	r := startReceiver(t, func(n int, d delivery) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	app := newTestApp(t, srv, webhookArgs(r))
	app.background(app.outbox.webhooks.sweep)
	signup(t, app.url, "ada@example.com")
	r.waitEvent(eventCreated, "ada@example.com")
	r.mu.Lock()
	got := append([]delivery(nil), r.got...)
	r.mu.Unlock()
	if len(got) != 3 || got[0].id != got[1].id || got[1].id != got[2].id || got[2].status != 200 {
		t.Errorf("attempts: %+v, want 3 with one webhook-id", got)
	}
	waitFor(t, 10*time.Second, "the row marked sent", func() bool {
		var status string
		var attempts int
		mustScan(t, app.store.read.QueryRow(`SELECT status, attempts FROM outbox WHERE channel = 'webhook'`), &status, &attempts)
		return status == "sent" && attempts == 3
	})
	if !containsLine(app.logs.String(), "webhook not sent, will retry", "500 Internal Server Error") {
		t.Errorf("no retry logged:\n%s", app.logs)
	}
}

// TestWebhookReceiverHangs: a receiver that never answers is cut off at
// 10 s, and the event is retried; a shutdown meanwhile stays bounded by
// -shutdown-timeout.
func TestWebhookReceiverHangs(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	r := startReceiver(t, func(n int, d delivery) int {
		<-hang
		return 200
	})
	t.Cleanup(func() { close(hang) }) // before the receiver's Close, which waits for its handlers
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, webhookArgs(r))
	start := time.Now()
	signup(t, app.url, "ada@example.com")
	waitFor(t, 20*time.Second, "the attempt cut off", func() bool {
		return containsLine(app.logs.String(), "webhook not sent, will retry", "Timeout")
	})
	if took := time.Since(start); took < webhookTimeout || took > webhookTimeout+5*time.Second {
		t.Errorf("the attempt was cut after %v, want %v", took, webhookTimeout)
	}

	// The real binary, SIGTERMed while a webhook hangs: out at the deadline.
	dir := t.TempDir()
	p := startBinary(t, append(baseArgs(dir), "-shutdown-timeout", "2s", "-webhook-url", r.url), "SIGNUP_WEBHOOK_SECRET="+testSecret)
	before := r.arrivals.Load()
	signup(t, p.url, "bob@example.com")
	waitFor(t, 10*time.Second, "the webhook to be in flight", func() bool { return r.arrivals.Load() > before })
	p.signal(t, syscall.SIGTERM)
	begun := time.Now()
	code := p.wait(t, 10*time.Second)
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("shutdown took %v with -shutdown-timeout 2s", took)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1 (the deadline passed with a webhook in flight)", code)
	}
}

// TestWebhookDrainedAtShutdown: SIGTERM right after an activation; the
// user.activated webhook is delivered before exit 0.
func TestWebhookDrainedAtShutdown(t *testing.T) {
	t.Parallel()
	var slow sync.Once
	r := startReceiver(t, func(n int, d delivery) int {
		if d.event.Type == eventActivated {
			slow.Do(func() { time.Sleep(time.Second) })
		}
		return 200
	})
	srv := startSMTP(t, nil)
	p := startBinary(t, append(append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...), "-webhook-url", r.url), "SIGNUP_WEBHOOK_SECRET="+testSecret)
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	found := false
	for _, d := range r.delivered() {
		found = found || d.event.Type == eventActivated
	}
	if !found {
		t.Errorf("user.activated was not delivered before the exit:\n%s", p.logs)
	}
	if strings.Contains(p.logs.String(), testSecret) || strings.Contains(p.logs.String(), strings.TrimPrefix(testSecret, "whsec_")) {
		t.Error("the webhook secret is in the log")
	}
}

// TestWebhookGuards: -webhook-url needs a secret of the right form, and in
// production https:// unless loopback; each refusal says why (exit 2).
func TestWebhookGuards(t *testing.T) {
	t.Parallel()
	prod := []string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "smtp.example.com", "-smtp-sender", "Signup <no-reply@example.com>"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-url", "https://app.example.com/hooks"}, "-webhook-url needs -webhook-secret"},
		{[]string{"-webhook-url", "https://app.example.com/hooks", "-webhook-secret", "hunter2"}, `must start with "whsec_"`},
		{[]string{"-webhook-url", "https://app.example.com/hooks", "-webhook-secret", "whsec_c2hvcnQ="}, "at least 24"},
		{[]string{"-webhook-secret", testSecret}, "-webhook-url is not"},
		{[]string{"-webhook-url", "ftp://app.example.com/"}, "http:// or https://"},
		{append(append([]string{}, prod...), "-webhook-url", "http://app.example.com/hooks", "-webhook-secret", testSecret), "production needs an https:// -webhook-url"},
	} {
		var stderr strings.Builder
		_, _, err := parseConfig(c.args, func(string) string { return "" }, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
		if strings.Contains(stderr.String(), "LaLaSw") {
			t.Errorf("%v: the secret in the message: %s", c.args, stderr.String())
		}
	}
	ok := append(append([]string{}, prod...), "-webhook-url", "http://127.0.0.1:9000/hooks", "-webhook-secret", testSecret)
	if _, _, err := parseConfig(ok, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("a loopback http:// webhook in production: %v", err)
	}
}

// TestCrashesLoseNoWebhook signs people up while the process is killed
// with SIGKILL at random moments, against a receiver that fails 30% of the
// time (a 500, or the connection dropped), then restarts it: every
// committed account arrives as user.created at least once, and no event
// arrives for one that did not commit.
func TestCrashesLoseNoWebhook(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var rngMu sync.Mutex
	roll := func(n int) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.IntN(n)
	}
	r := startReceiver(t, func(n int, d delivery) int {
		switch roll(10) {
		case 0, 1:
			return http.StatusInternalServerError
		case 2:
			return dropConnection
		}
		return http.StatusOK
	})
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	args := append(append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), "-webhook-url", r.url, "-mail-retry-min", "10ms", "-mail-retry-max", "200ms")
	env := "SIGNUP_WEBHOOK_SECRET=" + testSecret
	client := &http.Client{Timeout: 5 * time.Second}
	next := 0
	for round := range 5 {
		p := startBinary(t, args, env)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				next++
				body := fmt.Sprintf(`{"name": "Crash", "email": "hook%d@example.com", "password": "pa55word"}`, next)
				if res, err := client.Post(p.url+"/v1/users", "application/json", strings.NewReader(body)); err == nil {
					res.Body.Close()
				}
			}
		}()
		time.Sleep(time.Duration(50+roll(300)) * time.Millisecond) // the random moment of the crash is the point here
		p.signal(t, syscall.SIGKILL)
		p.wait(t, 10*time.Second)
		close(stop)
		<-done
		t.Logf("round %d: %d signups tried", round, next)
	}
	p := startBinary(t, args, env)
	st := openStoreT(t, filepath.Join(dir, "signup.db"))
	committed := map[string]bool{}
	rows, err := st.read.Query(`SELECT email FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var address string
		rows.Scan(&address)
		committed[address] = true
	}
	rows.Close()
	if len(committed) < 10 {
		t.Fatalf("only %d signups committed: the test proved little", len(committed))
	}
	waitFor(t, 60*time.Second, "a user.created for every committed account", func() bool {
		seen := map[string]bool{}
		for _, d := range r.delivered() {
			seen[d.event.Data.Email] = true
		}
		for address := range committed {
			if !seen[address] {
				return false
			}
		}
		return true
	})
	for _, d := range r.delivered() {
		if !committed[d.event.Data.Email] {
			t.Errorf("a webhook for %s, which did not commit", d.event.Data.Email)
		}
	}
	t.Logf("%d accounts committed across 5 SIGKILLs, each delivered; %d deliveries in all", len(committed), len(r.delivered()))
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("final shutdown exit %d", code)
	}
}

// openStoreT opens the database at path beside the running service, for
// the rest of the test.
func openStoreT(t *testing.T, path string) *store {
	t.Helper()
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close() })
	return st
}

// TestWebhookOutboxRetry: a webhook given up on is listed by `signup
// outbox list` and sent again by `signup outbox retry`, as it was — the
// same webhook-id.
func TestWebhookOutboxRetry(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	refuse.Store(true)
	r := startReceiver(t, func(n int, d delivery) int {
		if refuse.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	p := startBinary(t, append(append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), "-webhook-url", r.url), "SIGNUP_WEBHOOK_SECRET="+testSecret)
	signup(t, p.url, "ada@example.com")
	waitFor(t, 10*time.Second, "a refused attempt", func() bool { return r.arrivals.Load() > 0 })
	st := openStoreT(t, filepath.Join(dir, "signup.db"))
	// As if 72 hours of refusals had passed.
	var id int64
	var webhookID string
	mustScan(t, st.write.QueryRow(`UPDATE outbox SET status = 'failed', last_error = 'the receiver answered 503 Service Unavailable'
		WHERE channel = 'webhook' RETURNING id, message_id`), &id, &webhookID)
	out, err := exec.Command(builtBinary(t), "-db", filepath.Join(dir, "signup.db"), "outbox", "list", "-status", "failed").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "user.created") || !strings.Contains(string(out), r.url) {
		t.Fatalf("outbox list: %v\n%s", err, out)
	}
	refuse.Store(false)
	out, err = exec.Command(builtBinary(t), "-db", filepath.Join(dir, "signup.db"), "outbox", "retry", fmt.Sprint(id)).CombinedOutput()
	if err != nil {
		t.Fatalf("outbox retry: %v\n%s", err, out)
	}
	again := r.waitEvent(eventCreated, "ada@example.com")
	if again.id != webhookID {
		t.Errorf("retried with webhook-id %s, want %s", again.id, webhookID)
	}
}

// BenchmarkWebhookDrain delivers a backlog of 10,000 webhooks to a local
// receiver that verifies each signature, and reports webhooks per second.
// Target: >= 1,000/s.
func BenchmarkWebhookDrain(b *testing.B) {
	const n = 10000
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		r := startReceiver(b, nil)
		srv := startSMTP(b, nil)
		app := newTestApp(b, srv, webhookArgs(r))
		tx, err := app.store.write.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			u := &user{ID: int64(i + 1), Name: "Bulk", Email: fmt.Sprintf("bulk%d@example.com", i), CreatedAt: time.Now()}
			ev, err := app.store.composer.event(eventCreated, u, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if err := app.store.queue(context.Background(), tx, ev); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		app.outbox.webhooks.kick()
		waitFor(b, 5*time.Minute, "every webhook delivered", func() bool { return r.arrivals.Load() >= n })
		elapsed += time.Since(start)
		b.StopTimer()
		waitDrained(b, app.application)
		if got := len(r.delivered()); got != n {
			b.Fatalf("%d delivered, want %d", got, n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "webhooks/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSignupCeilingWebhooks is BenchmarkSignupCeiling with webhooks
// on: each signup also queues its user.created, delivered to a local
// receiver. Target: the same ratio as without (>= 90%).
func BenchmarkSignupCeilingWebhooks(b *testing.B) {
	r := startReceiver(b, nil)
	benchSignupCeiling(b, "-webhook-url", r.url, "-webhook-secret", testSecret)
}

// TestShutdownLeavesAClaimedBatch: with a slow receiver (a second an
// answer) and a batch of webhooks claimed at start, SIGTERM finishes the
// request in flight and gives the rest of the batch back: the process exits
// 0 well within -shutdown-timeout, and the next start delivers the rest,
// each once.
func TestShutdownLeavesAClaimedBatch(t *testing.T) {
	t.Parallel()
	const n = 8
	r := startReceiver(t, func(int, delivery) int {
		time.Sleep(time.Second)
		return http.StatusNoContent
	})
	dir := t.TempDir()
	st := openStoreT(t, filepath.Join(dir, "signup.db"))
	st.composer = testComposer(t)
	st.composer.webhookURL = r.url
	tx, _ := st.write.Begin()
	for i := range n {
		ev, _ := st.composer.event(eventCreated, &user{ID: int64(i + 1), Email: fmt.Sprintf("ada%d@example.com", i)}, time.Now())
		if err := st.queue(context.Background(), tx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit()
	st.close()

	srv := startSMTP(t, nil)
	args := append(append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), "-webhook-url", r.url, "-shutdown-timeout", "20s")
	p := startBinary(t, args, "SIGNUP_WEBHOOK_SECRET="+testSecret) // its sweep claims the n rows as one batch
	waitFor(t, 10*time.Second, "a webhook request in flight", func() bool { return r.arrivals.Load() > 0 })
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	t.Logf("shutdown with a batch of %d claimed took %v", n, time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("shutdown took %v with a batch of %d claimed: it worked through the batch", took.Round(time.Millisecond), n)
	}
	if got := len(r.delivered()); got >= n {
		t.Errorf("%d of %d delivered before the exit: nothing was left for the next start", got, n)
	}
	p = startBinary(t, args, "SIGNUP_WEBHOOK_SECRET="+testSecret)
	waitFor(t, 30*time.Second, "every webhook delivered", func() bool { return len(r.delivered()) >= n })
	p.signal(t, syscall.SIGTERM)
	p.wait(t, 30*time.Second)
	seen := map[string]bool{}
	for _, d := range r.delivered() {
		if seen[d.id] {
			t.Errorf("webhook %s delivered twice", d.id)
		}
		seen[d.id] = true
	}
}
