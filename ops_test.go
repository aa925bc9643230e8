package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), "NOTIFY_SOCKET="+sock)
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	// READY=1 came once the listener accepts: a request now is answered.
	if res, err := http.Get(p.url + "/v1/healthcheck"); err != nil || res.StatusCode != 200 {
		t.Errorf("healthcheck after READY=1: %v %v", res, err)
	}
	p.signal(t, syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", got)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestSocketActivationRestart restarts the service on a socket it inherits,
// as systemd does with socket activation (stop, then start; the socket
// queues connections meanwhile), while clients keep signing up: no request
// may be refused or lost, and every signup gets its email.
func TestSocketActivationRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	url := "http://" + ln.Addr().String()

	srv := startSMTP(t, nil)
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	start := func() *process {
		cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, builtBinary(t)}, args...)...)
		cmd.ExtraFiles = []*os.File{lnFile} // fd 3
		p := startCmd(t, cmd)
		waitFor(t, 20*time.Second, "the server to start", func() bool { return strings.Contains(p.logs.String(), "starting server") })
		return p
	}

	var (
		mu       sync.Mutex
		accepted []string
		failures []string
		sent     atomic.Int64
	)
	stop := make(chan struct{})
	var clients sync.WaitGroup
	stopClients := sync.OnceFunc(func() {
		close(stop)
		clients.Wait()
	})
	t.Cleanup(stopClients) // no client outlives the test, whatever fails
	for c := range 4 {
		clients.Go(func() {
			// A new connection per signup: this is about connections that
			// queue on the shared socket. (A request racing with the close
			// of an idle keep-alive connection is the client's to retry.)
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				address := fmt.Sprintf("restart%d-%d@example.com", c, i)
				body := fmt.Sprintf(`{"name": "R", "email": %q, "password": "pa55word"}`, address)
				res, err := client.Post(url+"/v1/users", "application/json", strings.NewReader(body))
				sent.Add(1)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s: %v", address, err))
				case res.StatusCode != 202:
					failures = append(failures, fmt.Sprintf("%s: status %d", address, res.StatusCode))
				default:
					accepted = append(accepted, address)
				}
				mu.Unlock()
				if err == nil {
					res.Body.Close()
				}
			}
		})
	}

	p := start()
	for range 3 {
		before := sent.Load()
		waitFor(t, 20*time.Second, "traffic", func() bool { return sent.Load() > before+20 })
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("old process exit %d", code)
		}
		p = start()
	}
	before := sent.Load()
	waitFor(t, 20*time.Second, "traffic", func() bool { return sent.Load() > before+20 })
	stopClients()
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("last process exit %d", code)
	}

	for _, f := range failures {
		t.Error(f)
	}
	// What a stop left pending (no session had claimed it when the wait
	// for background tasks began) goes out from the next start; after the
	// last stop, that is one more.
	p = start()
	waitFor(t, 20*time.Second, "every accepted signup emailed", func() bool { return len(notEmailed(srv, accepted)) == 0 })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("the next start: exit %d", code)
	}
	for _, address := range notEmailed(srv, accepted) {
		t.Errorf("%s accepted but not emailed", address)
	}
	t.Logf("%d signups over 3 restarts, %d refused or lost", len(accepted), len(failures))
}

func TestProductionGuards(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-env", "production", "-smtp-host", "mail.example.com"}, "production needs -base-url"},
		{[]string{"-env", "production", "-base-url", "http://signup.example.com"}, "production needs an https:// -base-url"},
		{[]string{"-base-url", "signup.example.com"}, "must be an http:// or https:// URL"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com"}, "production needs -smtp-host"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com", "-smtp-tls", "none"}, "refuses -smtp-tls none to mail.example.com"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com", "-bcrypt-cost", "8"}, "at least 10"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com"}, "production needs -smtp-sender with a fully qualified domain"},
		{[]string{"-cors-trusted-origins", "app.example.com"}, "not an origin"},
		{[]string{"-app-name", "Evil\r\nBcc: x"}, "without control characters"},
		{[]string{"-env", "staging"}, "development or production"},
		{[]string{"-bcrypt-cost", "3"}, "between 4 and 31"},
		{[]string{"-smtp-tls", "maybe"}, "starttls, tls or none"},
		{[]string{"-trusted-proxies", "nonsense"}, "not a CIDR"},
		{[]string{"-port", "x"}, "invalid value"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard, &stderr)
		if err == nil || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: error %v, stderr %q; want it to say %q", tt.args, err, stderr.String(), tt.want)
		}
	}
	// Loopback without TLS is allowed in production.
	if _, _, err := parseConfig([]string{"-env", "production", "-base-url", "http://127.0.0.1:4000", "-smtp-host", "127.0.0.1", "-smtp-tls", "none", "-smtp-sender", "Signup <no-reply@signup.example.com>"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("production on loopback without TLS: %v", err)
	}

	// The real binary exits 2 and says why.
	p := startBinaryNoWait(t, []string{"-env", "production", "-db", filepath.Join(t.TempDir(), "x.db"), "-base-url", "https://signup.example.com"})
	if code := p.wait(t, 20*time.Second); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(p.logs.String(), "production needs -smtp-host") {
		t.Errorf("output %q", p.logs)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SIGNUP_PORT": "5000", "SIGNUP_SMTP_PASSWORD": "from-env", "SIGNUP_LIMITER_ENABLED": "false"}
	cfg, _, err := parseConfig([]string{"-port", "6000"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.port != 6000 || cfg.smtpPassword != "from-env" || cfg.limiterEnabled {
		t.Errorf("port %d (want the flag's 6000), password %q, limiter %v", cfg.port, cfg.smtpPassword, cfg.limiterEnabled)
	}
	var stderr bytes.Buffer
	if _, _, err := parseConfig([]string{}, func(k string) string { return map[string]string{"SIGNUP_BCRYPT_COST": "lots"}[k] }, &stderr); err == nil {
		t.Error("a bad SIGNUP_BCRYPT_COST was accepted")
	}
	if !strings.Contains(stderr.String(), "SIGNUP_BCRYPT_COST") {
		t.Errorf("the error does not name the variable: %q", stderr.String())
	}

	// -h lists every flag and shows no secret taken from the environment.
	stderr.Reset()
	env["SIGNUP_SMTP_PASSWORD"] = "hunter2"
	_, _, err = parseConfig([]string{"-h"}, func(k string) string { return env[k] }, &stderr)
	if err == nil {
		t.Error("-h did not stop")
	}
	for _, flag := range []string{"-port", "-env", "-db", "-smtp-host", "-smtp-port", "-smtp-username", "-smtp-password", "-smtp-sender",
		"-smtp-tls", "-mail-dir", "-bcrypt-cost", "-shutdown-timeout", "-mail-retry-min", "-mail-retry-max",
		"-limiter-enabled", "-limiter-rps", "-limiter-burst", "-trusted-proxies", "-version", "-host", "-base-url", "-app-name", "-templates",
		"-cors-trusted-origins", "-smtp-helo", "-max-conns", "-max-conns-per-client", "-checkpoint-interval", "-mail-claim-lease"} {
		if !strings.Contains(stderr.String(), "  "+flag) {
			t.Errorf("-h does not list %s", flag)
		}
	}
	if strings.Contains(stderr.String(), "hunter2") {
		t.Error("-h shows the SMTP password")
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(builtBinary(t), "-version", "-env", "production").Output() // no guard stops it
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "signup ") || len(line) <= len("signup ") {
		t.Fatalf("-version printed %q", line)
	}
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	_, body := post(t, "GET", p.url+"/v1/healthcheck", nil)
	if v := body["system_info"].(map[string]any)["version"]; "signup "+v.(string) != line {
		t.Errorf("healthcheck version %q, -version %q", v, line)
	}
}

func TestBackupDuringSignups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...))

	var mu sync.Mutex
	var answered []string
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for c := range 3 {
		clients.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				address := fmt.Sprintf("backup%d-%d@example.com", c, i)
				status, _ := doNoFatal("POST", p.url+"/v1/users", fmt.Sprintf(`{"name": "B", "email": %q, "password": "pa55word"}`, address))
				if status == 202 {
					mu.Lock()
					answered = append(answered, address)
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, 10*time.Second, "some signups", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answered) > 50
	})
	mu.Lock()
	before := append([]string(nil), answered...)
	mu.Unlock()
	dest := filepath.Join(dir, "backup.db")
	out, err := exec.Command(builtBinary(t), "-db", filepath.Join(dir, "signup.db"), "backup", dest).CombinedOutput()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	close(stop)
	clients.Wait()

	db, err := sql.Open("sqlite", "file:"+dest+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	for _, address := range before {
		var n int
		mustScan(t, db.QueryRow(`SELECT count(*) FROM users WHERE email = ?`, address), &n)
		if n != 1 {
			t.Errorf("%s was answered before the backup began but is not in it", address)
		}
	}
	if info, err := os.Stat(dest); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
	t.Logf("backup holds all %d signups answered before it began", len(before))

	// It refuses to overwrite.
	out, err = exec.Command(builtBinary(t), "-db", filepath.Join(dir, "signup.db"), "backup", dest).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exists") {
		t.Errorf("second backup to the same file: %v %s", err, out)
	}
}

func TestFileModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-mail-dir", filepath.Join(dir, "mail")}
	p := startRun(t, args, nil) // development capture
	signup(t, p.url, "modes@example.com")
	var eml string
	waitFor(t, 10*time.Second, "a captured email", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		if len(files) > 0 {
			eml = files[0]
		}
		return len(files) > 0
	})
	waitFor(t, 10*time.Second, "the log of the captured file", func() bool {
		return containsLine(p.logs.String(), "email captured", "file="+eml)
	})
	data, _ := os.ReadFile(eml)
	tokenOf(t, data)
	want := map[string]fs.FileMode{
		"signup.db": 0o600, "signup.db-wal": 0o600, "signup.db-shm": 0o600,
		"mail": 0o700 | fs.ModeDir, filepath.Join("mail", filepath.Base(eml)): 0o600,
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := info.Mode() & (fs.ModePerm | fs.ModeDir); got != mode {
			t.Errorf("%s: mode %v, want %v", name, got, mode)
		}
	}
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

// TestSecondInstanceRefused: a second process serving the same SQLite file
// exits 1 at once, naming the file and the first one's pid, and the first
// keeps its claims and serves on.
func TestSecondInstanceRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startSMTP(t, nil)
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	first := startBinary(t, args)
	second := startBinaryNoWait(t, args)
	if code := second.wait(t, 20*time.Second); code != 1 {
		t.Errorf("second instance exit %d, want 1", code)
	}
	db := filepath.Join(dir, "signup.db")
	want := fmt.Sprintf("%s is served by another signup process (pid %d", db, first.cmd.Process.Pid)
	if !strings.Contains(second.logs.String(), want) {
		t.Errorf("second instance said %q, want it to contain %q", second.logs, want)
	}
	signup(t, first.url, "still@example.com")
	srv.waitMessages(t, 1, 10*time.Second)

	// Once the first has stopped, a new one starts.
	first.signal(t, syscall.SIGTERM)
	if code := first.wait(t, 20*time.Second); code != 0 {
		t.Errorf("first instance exit %d", code)
	}
	startBinary(t, args)
}

// TestDatabaseFileGone: when the database file is deleted or replaced while
// the service runs, no signup is answered 202 from then on, an error names
// what happened, and the service exits 1.
func TestDatabaseFileGone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		do   func(db string) error
		want string
	}{
		{"deleted", os.Remove, "was deleted"},
		{"replaced", func(db string) error {
			if err := os.WriteFile(db+".new", nil, 0o600); err != nil {
				return err
			}
			return os.Rename(db+".new", db)
		}, "was replaced"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			srv := startSMTP(t, nil)
			p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...))
			signup(t, p.url, "before@example.com")
			if err := tt.do(filepath.Join(dir, "signup.db")); err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				status, _ := doNoFatal("POST", p.url+"/v1/users", fmt.Sprintf(`{"name": "A", "email": "after%d@example.com", "password": "pa55word"}`, i))
				if status == 202 {
					t.Fatalf("signup %d after the file was %s: 202", i, tt.name)
				}
				if status == 0 {
					break // the service has shut down
				}
				if status != 503 {
					t.Errorf("signup %d: status %d, want 503", i, status)
				}
			}
			if code := p.wait(t, 10*time.Second); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !containsLine(p.logs.String(), "level=ERROR", "database file is gone", tt.want) {
				t.Errorf("no error log saying the file %s", tt.name)
			}
		})
	}
}

// TestFullDiskIs503: a database that cannot grow answers 503 with
// Retry-After, and takes signups again once there is room.
func TestFullDiskIs503(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	var pages int
	if err := app.store.write.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := app.store.write.Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	full := false
	for i := 0; i < 500 && !full; i++ {
		res, _ := do(t, "POST", app.url+"/v1/users", fmt.Sprintf(`{"name": %q, "email": "full%d@example.com", "password": "pa55word"}`, strings.Repeat("n", 400), i))
		switch res.StatusCode {
		case 202:
		case 503:
			full = true
			if res.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		default:
			t.Fatalf("signup %d: status %d", i, res.StatusCode)
		}
	}
	if !full {
		t.Fatal("the database never filled up")
	}
	if _, err := app.store.write.Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	signup(t, app.url, "room@example.com")
}

// TestConnectionCaps: idle connections past the per-client cap are closed
// at once while other clients are served; past the overall cap, so is
// everyone's.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), "-host", "127.0.0.1", "-max-conns", "8", "-max-conns-per-client", "5")...))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server closed a new connection from
	// address from at once (it may be reset before Dial even returns).
	refused := func(from string) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	healthy := func(from string) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && res.StatusCode == 200
	}

	var idle []net.Conn
	for range 5 {
		idle = append(idle, dial("127.0.0.1"))
	}
	waitFor(t, 10*time.Second, "the idle connections to be accepted", func() bool {
		return series(t, scrapeFrom(t, p.url, "127.0.0.2"))["signup_connections_open"] == 6 // and this one
	})
	if !refused("127.0.0.1") {
		t.Error("a sixth connection from one address was kept open")
	}
	if !healthy("127.0.0.2") {
		t.Error("another client was not served while one address is at its cap")
	}
	// The healthcheck's connection gone, the five idle ones (and the
	// scrape's) remain: three more fill the overall cap.
	waitFor(t, 10*time.Second, "the healthcheck's connection to close", func() bool {
		return series(t, scrapeFrom(t, p.url, "127.0.0.2"))["signup_connections_open"] == 6
	})
	// The scrape's connection may still count, the server not having seen
	// it close yet: a connection refused for it is dialled again.
	for held, tries := 0, 0; held < 3; tries++ {
		if tries == 10 {
			t.Fatalf("only %d of 3 more connections held under the overall cap", held)
		}
		c := dial("127.0.0.3")
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetReadDeadline(time.Time{})
			idle = append(idle, c)
			held++
		}
	}
	if !refused("127.0.0.4") {
		t.Error("a connection past the overall cap was kept open")
	}
	for _, c := range idle[:2] {
		c.Close()
	}
	waitFor(t, 10*time.Second, "a place to free up", func() bool { return healthy("127.0.0.4") })
	if m := series(t, scrapeFrom(t, p.url, "127.0.0.5")); m["signup_connections_refused_total"] < 2 {
		t.Errorf("metrics do not count the refused connections: %v", m["signup_connections_refused_total"])
	}
}
