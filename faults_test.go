package main

// Tests of an operator's bad day: the database away for a moment, an SMTP
// server that never greets.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// dbAway makes the database at db refuse work until back is called: on
// SQLite another connection holds the write lock (the service's writes fail
// once their busy timeout passes, as on a full disk); on PostgreSQL the
// database refuses connections and its sessions are ended (as in a
// restart).
func dbAway(t *testing.T, db string) (back func()) {
	t.Helper()
	ctx := context.Background()
	if !isPostgresURL(db) {
		// It waits for a write of the service's own that holds the lock
		// this instant (a claim's renewal, say), then takes the lock.
		other, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := other.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return func() {
			conn.ExecContext(ctx, "ROLLBACK")
			conn.Close()
			other.Close()
		}
	}
	u, err := neturl.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	base, _ := pgServer()
	admin, err := sql.Open("pgx", withDatabase(base, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true"); err != nil {
			t.Error(err)
		}
		admin.Close()
	}
}

// TestDatabaseAwayAfterReply: the database goes away right after the SMTP
// server's reply, so that the update recording it fails. Once the database
// is back, the email is recorded as sent (a 250: sent once, never again) or
// retried and sent (a 451) while the instance runs — not held by its own
// renewed claim until it stops. On both engines.
func TestDatabaseAwayAfterReply(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		for _, reply := range []string{"250", "451"} {
			t.Run(engine+"/"+reply, func(t *testing.T) {
				t.Parallel()
				db := newDB(t)
				var back atomic.Pointer[func()]
				srv := startSMTP(t, func(s *testSMTP) {
					s.data = func(n int64, _ *smtp.Conn) error {
						if n != 1 {
							return nil
						}
						b := dbAway(t, db)
						back.Store(&b)
						if reply == "451" {
							return tempFail
						}
						return nil
					}
				})
				app := newTestApp(t, srv, func(cfg *config) {
					cfg.db = db
					cfg.claimLease = 3 * time.Second // renewed every second
				})
				url, _ := serveTestApp(t, app)
				signup(t, url, "away@example.com")

				logged := "mark email sent"
				if reply == "451" {
					logged = "record email failure"
				}
				waitFor(t, 20*time.Second, "the failed update in the log", func() bool {
					return containsLine(app.logs.String(), "level=ERROR", logged)
				})
				(*back.Load())()
				waitFor(t, 20*time.Second, "the email recorded as sent", func() bool {
					sent, err := app.store.listOutbox(context.Background(), "sent")
					return err == nil && len(sent) == 1
				})
				if got := len(srv.messages()); got != 1 {
					t.Errorf("got %d messages accepted by the server, want 1", got)
				}
			})
		}
	}
}

// hangingSMTP accepts connections and never greets, like a server whose
// process is stuck. It counts the connections it accepted.
type hangingSMTP struct {
	accepted atomic.Int64
	host     string
	port     string
}

func startHangingSMTP(t *testing.T) *hangingSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingSMTP{}
	h.host, h.port, _ = net.SplitHostPort(ln.Addr().String())
	conns := make(chan net.Conn, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return h
}

// TestShutdownWhileServerHangsAtGreeting: with every session stuck in a
// greeting that never comes and a delivery queued behind them, shutdown
// claims nothing new — the queued delivery does not open a fifth session
// once the four time out — and exits cleanly within one connect timeout.
func TestShutdownWhileServerHangsAtGreeting(t *testing.T) {
	t.Parallel()
	hung := startHangingSMTP(t)
	app := newTestApp(t, &testSMTP{host: hung.host, port: hung.port}, nil)
	app.outbox.emails.sender.(*mailer).connectTimeout = 2 * time.Second
	url, stop := serveTestApp(t, app)
	for i := 0; hung.accepted.Load() < maxConnsOut; i++ {
		if i == 100 {
			t.Fatalf("got %d sessions after 100 signups, want %d", hung.accepted.Load(), maxConnsOut)
		}
		signup(t, url, "hang"+string(rune('a'+i%26))+string(rune('a'+i/26))+"@example.com")
	}
	signup(t, url, "queued@example.com") // a delivery now waits for a slot
	waitFor(t, 10*time.Second, "a delivery queued for a slot", func() bool { return app.outbox.emails.queued.Load() })
	before := hung.accepted.Load()
	if err := stop(); err != nil {
		t.Fatalf("shutdown returned %v, want nil: it finished its own work", err)
	}
	if after := hung.accepted.Load(); after != before {
		t.Errorf("got %d sessions opened after shutdown began, want 0", after-before)
	}
	if !containsLine(app.logs.String(), "stopped server") {
		t.Error("no stopped server line")
	}
}

// pgProxy forwards TCP connections on 127.0.0.1 to the test PostgreSQL
// server's socket, so that a test can cut them all at once without a word
// to either side — what clients see when the server restarts with
// pg_ctl -m immediate, or its machine goes away. It returns the URL of db
// through the proxy.
func pgProxy(t *testing.T, db string) (string, func()) {
	t.Helper()
	u, err := neturl.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(u.Query().Get("host"), ".s.PGSQL.5432")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", socket)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() { io.Copy(s, c); s.Close() })
			wg.Go(func() { io.Copy(c, s); c.Close() })
		}
	})
	cut := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(func() {
		ln.Close()
		cut()
		wg.Wait()
	})
	return fmt.Sprintf("postgres://postgres@%s%s?sslmode=disable", ln.Addr(), u.Path), cut
}

// TestPostgresConnectionsCut: every connection to PostgreSQL is cut at
// once, without a word (an immediate restart, a failover): the requests
// that meet a dead pooled connection are answered 503 with Retry-After, or
// served on a fresh one — never 500, and never logged as an internal
// error.
func TestPostgresConnectionsCut(t *testing.T) {
	t.Parallel()
	db, cut := pgProxy(t, postgresURL(t))
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.db = db })
	url, _ := serveTestApp(t, app)
	var wg sync.WaitGroup
	for i := range 16 { // fill the pool with connections
		wg.Go(func() {
			// A signup shed while 16 hash at once on a busy machine (503,
			// "busy") has done its part: the pool is what is warmed.
			res, body := do(t, "POST", url+"/v1/users", fmt.Sprintf(`{"name": "Warm", "email": "warm%d@example.com", "password": "pa55word1234"}`, i))
			if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("warm-up signup: %d %v", res.StatusCode, body)
			}
		})
	}
	wg.Wait()
	cut()
	ok := 0
	for i := range 20 {
		res, body := do(t, "POST", url+"/v1/users", fmt.Sprintf(`{"name": "After", "email": "after%d@example.com", "password": "pa55word1234"}`, i))
		switch {
		case res.StatusCode == http.StatusAccepted:
			ok++
		case res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "":
		default:
			t.Errorf("signup %d after the cut: got %d %v, want 202, or 503 with Retry-After", i, res.StatusCode, body)
		}
	}
	if ok == 0 {
		t.Error("no signup succeeded after the cut")
	}
	if containsLine(app.logs.String(), "internal error") {
		t.Error("a cut connection was logged as an internal error")
	}
}

// TestShutdownDuringDatabaseOutage: SIGTERM while PostgreSQL is away. The
// shutdown finished its own work, so it returns nil (exit 0) and says
// stopped server; what it could not do (count the outbox, release claims)
// is a warning, each bounded in time.
func TestShutdownDuringDatabaseOutage(t *testing.T) {
	t.Parallel()
	db := postgresURL(t)
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.db = db })
	url, stop := serveTestApp(t, app)
	signup(t, url, "before@example.com")
	waitFor(t, 10*time.Second, "the email sent", func() bool {
		sent, err := app.store.listOutbox(context.Background(), "sent")
		return err == nil && len(sent) == 1
	})
	back := dbAway(t, db)
	defer back()
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("shutdown during the outage returned %v, want nil", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v, want a bounded wait for the database", took)
	}
	logs := app.logs.String()
	if !containsLine(logs, "stopped server") || !containsLine(logs, "level=WARN", "database") {
		t.Errorf("want stopped server and a warning about the database in the log")
	}
}

// TestFullDiskFromWALRecovers: a reader holds an old snapshot (as
// Litestream does while it catches up), so the WAL grows until the small
// volume is all but full and signups are refused with 503. Once the reader
// lets go, the service frees the disk by itself: the checkpoint truncates
// the WAL (giving up the reserve first if it needs the room), and signups
// are accepted again — nothing else uses the space, and nothing is
// restarted. On a
// volume smaller than the documented 64 MB too (4 MB), where the service
// sizes the reserve and the WAL's bound to the room there is.
func TestFullDiskFromWALRecovers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		volume string
		bounds func(t *testing.T, st *store)
	}{
		{"12m", func(_ *testing.T, st *store) { st.reserveSize, st.walLimit = 2<<20, 4<<20 }},
		{"4m", func(t *testing.T, st *store) {
			if st.reserveSize > 1<<20 || st.walLimit > 1<<20 {
				t.Errorf("on a 4 MB volume: a reserve of %d bytes, a WAL bound of %d; want each at most a quarter of the room", st.reserveSize, st.walLimit)
			}
		}},
	} {
		t.Run(c.volume, func(t *testing.T) {
			t.Parallel()
			vol := smallVolume(t, c.volume)
			db := filepath.Join(vol, "signup.db")
			app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.db = db })
			c.bounds(t, app.store)
			url, _ := serveTestApp(t, app)
			waitFor(t, 10*time.Second, "the disk reserve", app.store.hasReserve)

			letGo := holdSnapshot(t, db)
			if !signupsUntilRefused(t, url, "fill", 3000, 0, 1) {
				t.Fatal("the volume never filled")
			}
			letGo() // the reader has caught up

			waitFor(t, 20*time.Second, "the WAL truncated", func() bool {
				info, err := os.Stat(db + "-wal")
				return err == nil && info.Size() <= app.store.walLimit
			})
			res, body := do(t, "POST", url+"/v1/users", `{"name": "After", "email": "after@example.com", "password": "pa55word1234"}`)
			if res.StatusCode != http.StatusAccepted {
				t.Errorf("a signup once the WAL was truncated: got %d %v, want 202", res.StatusCode, body)
			}
			waitFor(t, 10*time.Second, "the disk reserve taken again", app.store.hasReserve)
		})
	}
}

// smallVolume mounts a tmpfs of size (e.g. "12m") in a temporary directory
// and returns its path; it needs root, as CI has.
func smallVolume(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("mounting a small volume needs root, and CI runs as root")
		}
		t.Skip("mounting a small volume needs root (CI runs as root)")
	}
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.Mkdir(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", vol).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", vol).Run() })
	return vol
}

// fillVolume fills the volume at dir to the last byte with a file of its
// own, and returns a func that deletes it.
func fillVolume(t *testing.T, dir string) (free func()) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for len(block) > 0 {
		if _, err := f.Write(block); err != nil {
			block = block[:len(block)/2] // the last blocks, smaller and smaller
		}
	}
	f.Close()
	return func() { os.Remove(f.Name()) }
}

// volumeFree is the room left on the volume at dir.
func volumeFree(dir string) int64 {
	var fs syscall.Statfs_t
	syscall.Statfs(dir, &fs)
	return int64(fs.Bavail) * int64(fs.Bsize)
}

// holdSnapshot holds, on a connection of its own, a read transaction on
// the SQLite database at db — an old snapshot, as a Litestream replica
// catching up holds one — until letGo.
func holdSnapshot(t *testing.T, db string) (letGo func()) {
	t.Helper()
	reader, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	snapshot, err := reader.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	mustScan(t, snapshot.QueryRow(`SELECT count(*) FROM users`), &n)
	return func() { snapshot.Rollback() }
}

// signupsUntilRefused signs up prefix0@example.com, prefix1@… at base, pace
// apart, at most max of them, until refusals of them were answered 503; any
// answer but 202 and 503 fails the test. It reports whether it saw them.
func signupsUntilRefused(t *testing.T, base, prefix string, max int, pace time.Duration, refusals int) bool {
	t.Helper()
	seen := 0
	for i := 0; i < max && seen < refusals; i++ {
		res, _ := do(t, "POST", base+"/v1/users", fmt.Sprintf(`{"name": "Fill", "email": "%s%d@example.com", "password": "pa55word1234"}`, prefix, i))
		switch res.StatusCode {
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			seen++
		default:
			t.Fatalf("signup %d: got %d, want 202 until the disk is low, then 503", i, res.StatusCode)
		}
		time.Sleep(pace)
	}
	return seen >= refusals
}

// TestFullDiskForwardAuthStillAnswers: on a full disk every logged-in
// person's check still answers 200 when its session's last use falls due:
// that write is bookkeeping, logged once when it fails, never fatal.
func TestFullDiskForwardAuthStillAnswers(t *testing.T) {
	t.Parallel()
	vol := smallVolume(t, "8m")
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) { cfg.db = filepath.Join(vol, "signup.db") })
	clock := newClock(time.Now())
	app.setClock(clock.now)
	var tokens []string
	for i := range 5 {
		tokens = append(tokens, activatedAccount(t, app, srv, fmt.Sprintf("ada%d@example.com", i)))
	}
	defer fillVolume(t, vol)()
	clock.add(2 * lastUseEvery) // every session's last use falls due
	for i, token := range tokens {
		for range 3 {
			if res := withBearer(t, "GET", app.url+"/v1/forward-auth", token); res.StatusCode != http.StatusOK {
				t.Fatalf("session %d's check on a full disk: %d, want 200", i, res.StatusCode)
			}
		}
	}
	if n := strings.Count(app.logs.String(), "could not write a session's last use"); n != 1 {
		t.Errorf("the failed last-use write logged %d times, want once:\n%s", n, app.logs)
	}
}

// TestShutdownWithASendUnrecorded: the database goes away right after the
// SMTP server took an email, so its record as sent waits for the database;
// SIGTERM then ends that wait within lastWordsTimeout — the row stays
// claimed for its lease, as after a crash — rather than at the deadline:
// the shutdown finishes its own work, says stopped server, and returns nil.
// On both engines.
func TestShutdownWithASendUnrecorded(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			var back atomic.Pointer[func()]
			srv := startSMTP(t, func(s *testSMTP) {
				s.data = func(n int64, _ *smtp.Conn) error {
					if n == 1 {
						b := dbAway(t, db)
						back.Store(&b)
					}
					return nil
				}
			})
			app := newTestApp(t, srv, func(cfg *config) {
				cfg.db = db
				cfg.shutdownTimeout = 30 * time.Second
			})
			url, stop := serveTestApp(t, app)
			signup(t, url, "away@example.com")
			waitFor(t, 20*time.Second, "the failed record in the log", func() bool {
				return containsLine(app.logs.String(), "level=ERROR", "mark email sent")
			})
			defer func() { (*back.Load())() }()
			start := time.Now()
			if err := stop(); err != nil {
				t.Errorf("shutdown with a send unrecorded returned %v, want nil", err)
			}
			t.Logf("shutdown with a send unrecorded took %v", time.Since(start).Round(time.Millisecond))
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("shutdown took %v: it waited for the database toward the deadline", took.Round(time.Millisecond))
			}
			if !containsLine(app.logs.String(), "stopped server") {
				t.Error("no stopped server in the log")
			}
		})
	}
}

// pgSilentProxy is a TCP proxy to the PostgreSQL server of db that can go
// silent, as a network partition does: partition stops it forwarding
// anything — bytes in flight wait, new connections are taken and not
// answered — and heal lets everything through again. It returns the URL to
// give the service.
func pgSilentProxy(t *testing.T, db string) (url string, partition, heal func()) {
	t.Helper()
	u, err := neturl.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(u.Query().Get("host"), ".s.PGSQL.5432")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open := make(chan struct{}) // closed while forwarding
	close(open)
	gate := func() chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return open
	}
	var conns []net.Conn
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			<-gate() // silent: what was read waits
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				<-gate()
				s, err := net.Dial("unix", socket)
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, c, s)
				mu.Unlock()
				wg.Go(func() { pipe(s, c) })
				pipe(c, s)
			})
		}
	})
	partition = func() {
		mu.Lock()
		defer mu.Unlock()
		open = make(chan struct{})
	}
	heal = func() {
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-open:
		default:
			close(open)
		}
	}
	t.Cleanup(func() {
		heal()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return fmt.Sprintf("postgres://postgres@%s%s?sslmode=disable", ln.Addr(), u.Path), partition, heal
}

// TestSilentDatabase: PostgreSQL goes silent (a partition: nothing
// forwarded, nothing refused). Forward auth answers 503 with Retry-After
// within about two seconds, a signup within about five — no request hangs
// for the partition's length — and once it heals the same checks answer
// 200. A shutdown mid-partition ends well before its deadline.
func TestSilentDatabase(t *testing.T) {
	t.Parallel()
	url, partition, heal := pgSilentProxy(t, postgresURL(t))
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, func(cfg *config) {
		cfg.db = url
		cfg.shutdownTimeout = 30 * time.Second
	})
	base, stop := serveTestApp(t, app)
	signup(t, base, "ada@example.com")
	activate(t, base, waitFor1(t, srv, "ada@example.com", "Activate"))
	_, _, token := login(t, base, "ada@example.com", "pa55word1234")
	if res := withBearer(t, "GET", base+"/v1/forward-auth", token); res.StatusCode != http.StatusOK {
		t.Fatalf("forward auth before the partition: %d", res.StatusCode)
	}

	partition()
	for _, c := range []struct {
		what    string
		request func() *http.Response
		within  time.Duration
	}{
		{"forward auth", func() *http.Response { return withBearer(t, "GET", base+"/v1/forward-auth", token) }, 4 * time.Second},
		{"a signup", func() *http.Response {
			res, _ := do(t, "POST", base+"/v1/users", `{"name": "Bo", "email": "bo@example.com", "password": "pa55word1234"}`)
			return res
		}, 8 * time.Second},
	} {
		start := time.Now()
		res := c.request()
		if took := time.Since(start); res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || took > c.within {
			t.Errorf("%s during the partition: %d (Retry-After %q) after %v; want 503 with Retry-After within %v",
				c.what, res.StatusCode, res.Header.Get("Retry-After"), took.Round(time.Millisecond), c.within)
		}
	}
	heal()
	waitFor(t, 20*time.Second, "forward auth after the partition healed", func() bool {
		return withBearer(t, "GET", base+"/v1/forward-auth", token).StatusCode == http.StatusOK
	})

	partition()
	start := time.Now()
	stop()
	t.Logf("shutdown mid-partition took %v", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("a shutdown mid-partition took %v: it waited toward its deadline", took.Round(time.Millisecond))
	}
}

// TestStalledReaderKeepsItsRoom: another process's reader stalls holding
// an old snapshot (as a Litestream replica stopped mid-sync does), so the
// WAL cannot be truncated while signups fill a small volume. The service
// never takes the last of the disk: once the reader pins the WAL and the
// room left is under the reserve's size, requests that write are refused
// with 503 and the reserve is given up — a checkpoint that says BUSY, not
// only FULL — leaving the reader room to catch up. When it lets go, the
// WAL is truncated, signups are accepted again, and the reserve is taken
// again, with nothing done by hand.
func TestStalledReaderKeepsItsRoom(t *testing.T) {
	t.Parallel()
	vol := smallVolume(t, "32m")
	db := filepath.Join(vol, "signup.db")
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.db = db })
	url, _ := serveTestApp(t, app)
	waitFor(t, 10*time.Second, "the disk reserve", app.store.hasReserve)
	letGo := holdSnapshot(t, db)
	// A busy site's pace, not a flood: the chores see the WAL grow.
	if !signupsUntilRefused(t, url, "fill", 5000, 5*time.Millisecond, 1) {
		t.Fatal("the volume never filled")
	}
	if f := volumeFree(vol); f < 1<<20 {
		t.Errorf("%d bytes left on the volume when signups were refused: the service took the last of the disk", f)
	}
	waitFor(t, 10*time.Second, "the reserve given up for the reader", func() bool { return !app.store.hasReserve() })
	// Writes go on above the reserve's room, and stop below it again.
	refused := signupsUntilRefused(t, url, "more", 5000, 5*time.Millisecond, 1)
	if f := volumeFree(vol); !refused || f < app.store.reserveSize/2 {
		t.Errorf("with the reserve given up: refused %v, %d bytes left; want refused with at least half the reserve's %d left", refused, f, app.store.reserveSize)
	}
	// The chore logs its warning just after it lets the reserve go (after
	// a checkpoint, on one path): wait for it.
	waitFor(t, 10*time.Second, "a warning that the reserve was given up", func() bool {
		return containsLine(app.logs.String(), "level=WARN", "gave up the disk reserve")
	})

	letGo() // the reader catches up and lets go
	waitFor(t, 30*time.Second, "a signup accepted again", func() bool {
		res, _ := do(t, "POST", url+"/v1/users", `{"name": "After", "email": "after@example.com", "password": "pa55word1234"}`)
		return res.StatusCode == http.StatusAccepted
	})
	waitFor(t, 10*time.Second, "the disk reserve taken again", app.store.hasReserve)
}
