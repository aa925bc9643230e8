package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInputRules(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	user := func(name, email, password string) string {
		b, _ := json.Marshal(map[string]string{"name": name, "email": email, "password": password})
		return string(b)
	}
	ok := func(name, email, password string) string { return user(name, email, password) }
	tests := []struct {
		name   string
		body   string
		status int
		field  string // for 422: the field that must carry the message
		want   string // a part of the error message
	}{
		{"empty body", ``, 400, "", "body must not be empty"},
		{"badly-formed", `{"name": "a",}`, 400, "", "badly-formed JSON (at character 14)"},
		{"truncated", `{"name": "a"`, 400, "", "badly-formed JSON"},
		{"wrong type", `{"name": 42}`, 400, "", `incorrect JSON type for field "name"`},
		{"not an object", `["a"]`, 400, "", "must be a JSON object"},
		{"unknown key", `{"nickname": "a"}`, 400, "", `unknown key "nickname"`},
		{"two values", `{}{}`, 400, "", "single JSON value"},
		{"invalid UTF-8", "{\"name\": \"\xff\"}", 400, "", "valid UTF-8"},
		{"too large", `{"name": "` + strings.Repeat("a", 1<<20) + `"}`, 413, "", "must not be larger than 1048576 bytes"},
		{"name missing", user("", "a@example.com", "pa55word"), 422, "name", "must be provided"},
		{"name too long", user(strings.Repeat("é", 251), "a@example.com", "pa55word"), 422, "name", "500 bytes"},
		{"name with CR/LF", user("Eve\r\nBcc: x@evil.example", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"name with a bell", user("Eve\a", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"name with a bidi override", user("Tina\u202egpj.exe", "a@example.com", "pa55word"), 422, "name", "format characters"},
		{"name with a URL", user("Win a prize https://evil.example", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with www.", user("see www.evil", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with a host name", user("Visit evil.example.com now", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with initials", ok("J. R. R. Tolkien", "jrr@example.com", "pa55word"), 202, "", ""},
		{"email missing", user("A", "", "pa55word"), 422, "email", "must be provided"},
		{"email with an address literal", user("A", "root@[127.0.0.1]", "pa55word"), 422, "email", "address literal"},
		{"email with a one-label domain", user("A", "postmaster@localhost", "pa55word"), 422, "email", "two labels"},
		{"email a@e", user("A", "a@e", "pa55word"), 422, "email", "two labels"},
		{"email without @", user("A", "not-an-email", "pa55word"), 422, "email", "valid email address"},
		{"email with display name", user("A", "Alice <a@example.com>", "pa55word"), 422, "email", ""},
		{"email list", user("A", "a@example.com,b@example.com", "pa55word"), 422, "email", "valid email address"},
		{"email with CR/LF", user("A", "a@example.com\r\nBcc: x@evil.example", "pa55word"), 422, "email", ""},
		{"email with space", user("A", "a b@example.com", "pa55word"), 422, "email", ""},
		{"email not ASCII", user("A", "jöran@example.com", "pa55word"), 422, "email", "ASCII"},
		{"email too long", user("A", strings.Repeat("a", 250)+"@example.com", "pa55word"), 422, "email", "254 bytes"},
		{"password missing", user("A", "a@example.com", ""), 422, "password", "must be provided"},
		{"password too short", user("A", "a@example.com", "1234567"), 422, "password", "at least 8 characters"},
		{"password too long", user("A", "a@example.com", strings.Repeat("p", 73)), 422, "password", "not be more than 72 characters"},
		{"password of 7 characters in 21 bytes", user("A", "a@example.com", strings.Repeat("密", 7)), 422, "password", "at least 8 characters"},
		{"password of 8 characters", ok("Ann", "ann@example.com", "12345678"), 202, "", ""},
		{"password of 72 characters", ok("Bo", "bo@example.com", strings.Repeat("p", 72)), 202, "", ""},
		{"password of 40 characters in 80 bytes", ok("Cy", "cy2@example.com", strings.Repeat("é", 40)), 202, "", ""},
		{"name of 500 bytes, unicode", ok(strings.Repeat("é", 250), "cy@example.com", "pa55word"), 202, "", ""},
		{"duplicate, other case: the same answer", ok("Ann", "ANN@Example.com", "pa55word"), 202, "", ""},
	}
	for _, tt := range tests { // not parallel: the duplicate case needs the earlier signup
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, "POST", app.url+"/v1/users", tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %v", res.StatusCode, tt.status, body)
			}
			switch {
			case tt.status == 202:
				if msg, _ := body["message"].(string); msg == "" || len(body) != 1 {
					t.Errorf("answer %v, want a message alone", body)
				}
			case tt.field != "":
				errs, isMap := body["error"].(map[string]any)
				if !isMap {
					t.Fatalf("error %v is not per field", body["error"])
				}
				if msg, _ := errs[tt.field].(string); !strings.Contains(msg, tt.want) || msg == "" {
					t.Errorf("error for %s = %q, want it to say %q", tt.field, msg, tt.want)
				}
			default:
				if msg, _ := body["error"].(string); !strings.Contains(msg, tt.want) {
					t.Errorf("error %q, want it to say %q", msg, tt.want)
				}
			}
		})
	}
}

func TestRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)

	res, body := do(t, "GET", app.url+"/v1/healthcheck", "")
	info, _ := body["system_info"].(map[string]any)
	if res.StatusCode != 200 || body["status"] != "available" || info["environment"] != "development" || info["version"] == "" {
		t.Errorf("healthcheck: %d %v", res.StatusCode, body)
	}
	res, body = do(t, "GET", app.url+"/v1/nothing", "")
	if res.StatusCode != 404 || body["error"] == nil {
		t.Errorf("unknown path: %d %v", res.StatusCode, body)
	}
	res, body = do(t, "DELETE", app.url+"/v1/users", "")
	if res.StatusCode != 405 || res.Header.Get("Allow") != "POST" || body["error"] == nil {
		t.Errorf("wrong method: %d Allow=%q %v", res.StatusCode, res.Header.Get("Allow"), body)
	}
}

func TestServerErrorIsGenericAndLogged(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	app.store.write.Close() // every write now fails inside the driver
	res, body := do(t, "POST", app.url+"/v1/users", `{"name": "A", "email": "a@example.com", "password": "pa55word"}`)
	if res.StatusCode != 500 {
		t.Fatalf("status %d, want 500", res.StatusCode)
	}
	if msg := body["error"].(string); strings.Contains(msg, "sql") {
		t.Errorf("500 answer shows internals: %q", msg)
	}
	if !containsLine(app.logs.String(), "internal error", "method=POST", "path=/v1/users", "sql") {
		t.Errorf("the 500 was not logged with method, URI and cause:\n%s", app.logs)
	}
}

func TestPanicInHandlerAnswers500(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	h := app.recoverPanic(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("oops") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "the server encountered a problem") {
		t.Errorf("got %d %q", rec.Code, rec.Body)
	}
	if !containsLine(app.logs.String(), "internal error", "oops") {
		t.Error("the panic was not logged")
	}
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) {
		cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 0.001, 2
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	get := func(forwarded string) int {
		req, _ := http.NewRequest("GET", app.url+"/v1/healthcheck", nil)
		if forwarded != "" {
			req.Header.Set("X-Forwarded-For", forwarded)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		return res.StatusCode
	}
	for i, want := range []int{200, 200, 429} {
		if got := get("203.0.113.7"); got != want {
			t.Errorf("request %d from 203.0.113.7: %d, want %d", i+1, got, want)
		}
	}
	// Another client behind the same trusted proxy has its own bucket; a
	// spoofed hop left of the real client is ignored.
	if got := get("198.51.100.1, 203.0.113.8"); got != 200 {
		t.Errorf("second client: %d, want 200", got)
	}
	if got := get("198.51.100.1, 203.0.113.8"); got != 200 {
		t.Errorf("second client, second request: %d, want 200", got)
	}
	if got := get("10.9.9.9, 203.0.113.8"); got != 429 {
		t.Errorf("second client with another spoofed hop: %d, want 429", got)
	}
	// IPv6 clients are counted by /64: another address in it shares the bucket.
	get("2001:db8:1:2::1")
	get("2001:db8:1:2::1")
	if got := get("2001:db8:1:2:ffff::9"); got != 429 {
		t.Errorf("another address in the same /64: %d, want 429", got)
	}
	if got := get("2001:db8:1:3::1"); got != 200 {
		t.Errorf("an address in another /64: %d, want 200", got)
	}
}

func TestClientAddrIgnoresForwardedFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	app := &application{cfg: config{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("X-Forwarded-For", "127.0.0.1")
	if got := app.clientAddr(r); got.String() != "192.0.2.1" {
		t.Errorf("untrusted peer: client %v, want 192.0.2.1", got)
	}
	r.RemoteAddr = "10.1.2.3:1234"
	if got := app.clientAddr(r); got.String() != "127.0.0.1" {
		t.Errorf("trusted proxy: client %v, want 127.0.0.1", got)
	}
	// An unparsable hop ends the walk with an unknown client, never the
	// (loopback) proxy: /metrics must not answer it.
	app = newTestApp(t, startSMTP(t, nil), func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}).application
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, not-an-address")
	if got := app.clientAddr(r); got.IsValid() {
		t.Errorf("bad hop: client %v, want unknown", got)
	}
	r = httptest.NewRequest("GET", "/metrics", nil)
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "garbage")
	rec := httptest.NewRecorder()
	app.routes().ServeHTTP(rec, r)
	if rec.Code != http.StatusNotFound {
		t.Errorf("/metrics through a loopback proxy with a bad hop: %d, want 404", rec.Code)
	}
	// The proxy's own request, without X-Forwarded-For, is the proxy's.
	r.Header.Del("X-Forwarded-For")
	rec = httptest.NewRecorder()
	app.routes().ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Errorf("/metrics from the loopback proxy itself: %d, want 200", rec.Code)
	}
}

func TestConcurrentSignups(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)   // bcrypt cost 4
	app.hasher.maxWait = time.Minute // this is about locking, not load shedding: a slow -race run must not shed
	const n = 50
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	for i := range n {
		wg.Go(func() {
			res, body := doNoFatal("POST", app.url+"/v1/users",
				fmt.Sprintf(`{"name": "User %d", "email": "user%d@example.com", "password": "pa55word"}`, i, i))
			statuses[i], bodies[i] = res, body
		})
	}
	wg.Wait()
	for i := range n {
		if statuses[i] != 202 {
			t.Errorf("signup %d: %d %v", i, statuses[i], bodies[i])
		}
	}
	for _, bad := range []string{"locked", "BUSY"} {
		if strings.Contains(app.logs.String(), bad) {
			t.Errorf("logs mention %q", bad)
		}
	}
	srv.waitMessages(t, n, 20*time.Second)
}

// doNoFatal is do for use from other goroutines: it reports instead of failing.
func doNoFatal(method, url, body string) (int, map[string]any) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func TestOverloadSheds503(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	app.hasher.maxWait = 50 * time.Millisecond
	for range cap(app.hasher.slots) { // every core busy hashing
		app.hasher.slots <- struct{}{}
	}
	body := `{"name": "Busy", "email": "busy@example.com", "password": "pa55word"}`
	res, out := do(t, "POST", app.url+"/v1/users", body)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || out["error"] == nil {
		t.Fatalf("overloaded: %d Retry-After=%q %v", res.StatusCode, res.Header.Get("Retry-After"), out)
	}
	var users int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM users`), &users)
	if users != 0 {
		t.Errorf("a shed signup was stored")
	}
	for range cap(app.hasher.slots) {
		<-app.hasher.slots
	}
	if res, out = do(t, "POST", app.url+"/v1/users", body); res.StatusCode != 202 {
		t.Errorf("after the load: %d %v", res.StatusCode, out)
	}
}
