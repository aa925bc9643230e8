package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// errNoPostgres means this machine has no PostgreSQL server to start.
var errNoPostgres = errors.New("no PostgreSQL server installed (Debian: apt-get install postgresql; .ci/run installs it)")

// pgServer is a throwaway PostgreSQL for the tests, started on first use:
// initdb and pg_ctl in a temporary directory (as the postgres user when the
// tests run as root: initdb refuses root), listening on a unix socket
// there only. SIGNUP_TEST_POSTGRES, a URL of a server whose user may create
// databases, is used instead when set. It returns a URL without a database
// name; pgStop, set when it started one, stops it.
var pgServer = sync.OnceValues(func() (string, error) {
	if url := os.Getenv("SIGNUP_TEST_POSTGRES"); url != "" {
		return url, nil
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return "", errNoPostgres
	}
	slices.Sort(bins)
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "signup-pg")
	if err != nil {
		return "", err
	}
	run := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	if os.Geteuid() == 0 {
		pg, err := osuser.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("tests run as root, and initdb refuses root: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
		run = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c max_connections=300", dir)
	if out, err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return "", fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	pgStop = func() {
		run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
	return "postgres://postgres@/?host=" + dir, nil
})

// pgStop stops the server pgServer started, if any; TestMain calls it.
var pgStop func()

// postgresURL returns the URL of a new, empty database on the test server,
// dropped when the test ends. Without a server the test is skipped, except
// under CI, which installs one.
func postgresURL(t testing.TB) string {
	t.Helper()
	base, err := pgServer()
	if errors.Is(err, errNoPostgres) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", withDatabase(base, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "signup_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", withDatabase(base, "postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE " + name + " WITH (FORCE)")
	})
	return withDatabase(base, name)
}

// withDatabase puts a database name into a URL such as postgres://u@/?host=DIR.
func withDatabase(base, name string) string {
	before, after, found := strings.Cut(base, "/?")
	if found {
		return before + "/" + name + "?" + after
	}
	if u, q, ok := strings.Cut(base, "?"); ok {
		return strings.TrimSuffix(u, "/") + "/" + name + "?" + q
	}
	return strings.TrimSuffix(base, "/") + "/" + name
}

// engines is the table of database engines the store tests run against.
func engines(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "signup.db") },
		"postgres": func(t *testing.T) string { return postgresURL(t) },
	}
}

// pgArgs are the flags of an instance on the PostgreSQL database db.
func pgArgs(t *testing.T, db string, srv *testSMTP, extra ...string) []string {
	args := []string{"-db", db, "-port", "0", "-bcrypt-cost", "4", "-limiter-enabled=false", "-mail-dir", filepath.Join(t.TempDir(), "mail")}
	return append(append(args, smtpArgs(srv.host, srv.port)...), extra...)
}

// TestPostgresTwoInstances runs the flows of a person and of a script
// across two instances sharing one PostgreSQL database: every step may land
// on either, and budgets and throttles hold across both.
func TestPostgresTwoInstances(t *testing.T) {
	t.Parallel()
	db := postgresURL(t)
	srv := startSMTP(t, nil)
	hooks := startReceiver(t, nil)
	env := "SIGNUP_WEBHOOK_SECRET=" + testSecret
	a := startBinary(t, pgArgs(t, db, srv, "-webhook-url", hooks.url), env)
	b := startBinary(t, pgArgs(t, db, srv, "-webhook-url", hooks.url), env)

	// Sign up on one, activate from the emailed link on the other, by the page.
	status, _ := form(t, a.url, "/signup", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"first-password"}})
	if status != 200 {
		t.Fatalf("signup form: %d", status)
	}
	_, token := linkOf(t, srv.waitMessages(t, 1, 10*time.Second)[0].data)
	if status, page := get(t, b.url, "/activate?token="+token); status != 200 || !strings.Contains(page, "<strong>Ada</strong>") {
		t.Fatalf("activation page on the other instance: %d\n%s", status, page)
	}
	if status, page := form(t, b.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"first-password"}}); status != 200 || !strings.Contains(page, "activated") {
		t.Fatalf("activate: %d\n%s", status, page)
	}

	// Log in on one, use the token on the other.
	status, body := post(t, "POST", a.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "first-password"})
	bearer, _ := body["authentication_token"].(map[string]any)["token"].(string)
	if status != 201 || withBearerStatus(t, "GET", b.url+"/v1/users/me", bearer) != 200 {
		t.Fatalf("login on one instance, /me on the other: %d %v", status, body)
	}

	// A browser's session made on one works on the other, and a logout on
	// the other ends it on both.
	va := newVisitor(t, a.url)
	va.logIn("ada@example.com", "first-password")
	vb := &visitor{t: t, base: b.url, client: va.client} // the same browser
	if got := vb.get("/account"); got.status != 200 || !strings.Contains(got.body, "ada@example.com") {
		t.Errorf("a session from one instance on the other: %d", got.status)
	}
	cookie := va.cookie("signup_session")
	vb.post("/logout", nil)
	stale := newVisitor(t, a.url) // a copy of the cookie, kept past the logout
	u, _ := url.Parse(a.url)
	stale.client.Jar.SetCookies(u, []*http.Cookie{{Name: "signup_session", Value: cookie}})
	if got := stale.get("/account"); cookie == "" || got.status != 303 {
		t.Errorf("the session after a logout on the other instance: %d, want 303", got.status)
	}
	if got := stale.get("/v1/forward-auth"); got.status != 401 {
		t.Errorf("forward auth after a logout on the other instance: %d, want 401", got.status)
	}

	// Reset on one, set the password on the other: the old bearer token dies.
	post(t, "POST", b.url+"/v1/tokens/password-reset", map[string]string{"email": "ada@example.com"})
	_, reset := linkOf(t, srv.waitMessages(t, 2, 10*time.Second)[1].data)
	if status, body := post(t, "PUT", a.url+"/v1/users/password", map[string]string{"password": "second-password", "token": reset}); status != 200 {
		t.Fatalf("reset: %d %v", status, body)
	}
	if withBearerStatus(t, "GET", a.url+"/v1/users/me", bearer) != 401 {
		t.Error("the bearer token outlived the reset")
	}
	if status, _ := post(t, "POST", b.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "second-password"}); status != 201 {
		t.Errorf("login with the new password: %d", status)
	}

	// The send budget holds across both: a signup and 10 resends, 3 emails.
	signup(t, b.url, "flood@example.com")
	for i := range 10 {
		post(t, "POST", []string{a.url, b.url}[i%2]+"/v1/tokens/activation", map[string]string{"email": "flood@example.com"})
	}
	// The login throttle holds across both: 5 failures, then 429 anywhere.
	for i := range 5 {
		if status, _ := post(t, "POST", []string{a.url, b.url}[i%2]+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "guess"}); status != 401 {
			t.Fatalf("guess %d: %d", i, status)
		}
	}
	for _, p := range []*process{a, b} {
		if status, _ := post(t, "POST", p.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "second-password"}); status != 429 {
			t.Errorf("sixth attempt: %d, want 429", status)
		}
	}
	signup(t, a.url, "marker@example.com")
	waitFor(t, 10*time.Second, "the marker email", func() bool {
		return slices.ContainsFunc(srv.messages(), func(m received) bool { return m.to == "marker@example.com" })
	})
	flood := 0
	for _, m := range srv.messages() {
		if m.to == "flood@example.com" {
			flood++
		}
	}
	if flood != budgets[allowanceStranger].perHour {
		t.Errorf("%d emails to one address across two instances, want %d", flood, budgets[allowanceStranger].perHour)
	}

	// The webhooks of both, each delivered once (claims are exclusive).
	hooks.waitEvent(eventPasswordChanged, "ada@example.com")
	ids := map[string]int{}
	for _, d := range hooks.delivered() {
		ids[d.id]++
		if ids[d.id] > 1 {
			t.Errorf("webhook %s (%s) delivered twice", d.id, d.event.Type)
		}
	}
	for _, typ := range []eventType{eventCreated, eventActivated} {
		hooks.waitEvent(typ, "ada@example.com")
	}

	for _, p := range []*process{a, b} {
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
}

// withBearerStatus sends method to url with the bearer token and returns
// the status.
func withBearerStatus(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestPostgresInstanceDies: signups spread over two instances on one
// PostgreSQL while one is SIGKILLed twice in the middle of sending and
// restarted: every accepted signup gets its email (what the dead one had
// claimed goes out once its lease expires), and duplicates are at most
// the sends in flight at each kill.
func TestPostgresInstanceDies(t *testing.T) {
	t.Parallel()
	db := postgresURL(t)
	srv := startSMTP(t, slowData(5*time.Millisecond))
	args := pgArgs(t, db, srv, "-mail-claim-lease", "2s", "-mail-retry-min", "10ms", "-mail-retry-max", "100ms")
	a := startBinary(t, args)
	b := startBinary(t, args)

	var mu sync.Mutex
	var accepted []string
	urls := []string{a.url, b.url}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	stopClients := sync.OnceFunc(func() { close(stop); clients.Wait() })
	t.Cleanup(stopClients)
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range 4 {
		clients.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				url := urls[(c+i)%2]
				mu.Unlock()
				address := fmt.Sprintf("spread%d-%d@example.com", c, i)
				res, err := client.Post(url+"/v1/users", "application/json",
					strings.NewReader(fmt.Sprintf(`{"name": "S", "email": %q, "password": "pa55word"}`, address)))
				if err != nil {
					continue // that instance is down
				}
				res.Body.Close()
				if res.StatusCode == 202 {
					mu.Lock()
					accepted = append(accepted, address)
					mu.Unlock()
				}
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	for kill := range 2 {
		before := count()
		waitFor(t, 20*time.Second, "signups before the kill", func() bool { return count() > before+100 })
		a.signal(t, syscall.SIGKILL)
		a.wait(t, 10*time.Second)
		t.Logf("kill %d: %d accepted so far, %d emails sent", kill+1, count(), len(srv.messages()))
		a = startBinary(t, args)
		mu.Lock()
		urls[0] = a.url
		mu.Unlock()
	}
	before := count()
	waitFor(t, 20*time.Second, "signups after the kills", func() bool { return count() > before+100 })
	stopClients()

	mu.Lock()
	want := slices.Clone(accepted)
	mu.Unlock()
	got := map[string]int{}
	waitFor(t, 60*time.Second, "an email for every accepted signup", func() bool {
		clear(got)
		for _, m := range srv.messages() {
			got[m.to]++
		}
		for _, address := range want {
			if got[address] == 0 {
				return false
			}
		}
		return true
	})
	duplicates := 0
	for _, n := range got {
		duplicates += n - 1
	}
	t.Logf("%d signups over two instances, one killed twice: all emailed, %d duplicates", len(want), duplicates)
	if duplicates > 2*maxConnsOut {
		t.Errorf("%d duplicates; at most %d sends are in flight at each of 2 kills", duplicates, maxConnsOut)
	}
	for _, p := range []*process{a, b} {
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
}

// TestBackupOfPostgresPointsToPgDump: backup copies SQLite only; with a
// PostgreSQL URL it exits 2 and names pg_dump.
func TestBackupOfPostgresPointsToPgDump(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(builtBinary(t), "-db", "postgres://signup@db.invalid/signup", "backup", filepath.Join(t.TempDir(), "copy"))
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "pg_dump") {
		t.Errorf("exit %d, output %q; want 2 and a pointer to pg_dump", code, out)
	}
}
