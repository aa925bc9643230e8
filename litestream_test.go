package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// litestreamYML is the configuration the README gives, with a file
// replica in place of S3 and intervals short enough for a test.
const litestreamYML = `dbs:
  - path: %s
    monitor-interval: 100ms
    checkpoint-interval: 1s
    replica:
      type: file
      path: %s
      sync-interval: 100ms
`

// TestLitestreamReplica runs a real `litestream replicate` beside the
// service across several of its checkpoints: signups stay fast (the
// checkpoint never waits for Litestream's read transaction), the log says
// when the WAL cannot be truncated, no token reaches the files, and
// `litestream restore` brings back every answered signup.
func TestLitestreamReplica(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("litestream")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("litestream is not installed; .ci/run installs it")
		}
		t.Skip("litestream is not installed (go install github.com/benbjohnson/litestream/cmd/litestream@v0.5.18; .ci/run installs it)")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "signup.db")
	config := filepath.Join(dir, "litestream.yml")
	os.WriteFile(config, fmt.Appendf(nil, litestreamYML, db, filepath.Join(dir, "replica")), 0o600)

	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-checkpoint-interval", "500ms")...))
	ls := startCmd(t, exec.Command(bin, "replicate", "-config", config))
	waitFor(t, 20*time.Second, "litestream to start replicating", func() bool {
		entries, _ := os.ReadDir(filepath.Join(dir, "replica"))
		return len(entries) > 0
	})

	// Five seconds of signups: ten of the service's checkpoints.
	var answered []string
	var slowest time.Duration
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		start := time.Now()
		address := fmt.Sprintf("replicated%d@example.com", len(answered))
		signup(t, p.url, address)
		answered = append(answered, address)
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("%d signups beside litestream, the slowest %v", len(answered), slowest)
	if slowest > 3*time.Second { // the old checkpoint held the writer for its 5 s busy timeout
		t.Errorf("a signup took %v: a checkpoint held back the writer", slowest)
	}
	if !containsLine(p.logs.String(), "level=WARN", "checkpoint could not truncate the WAL") {
		t.Error("no WARN line saying the checkpoint could not truncate the WAL")
	}

	var tokens [][]byte
	for _, m := range srv.waitMessages(t, len(answered), 20*time.Second) {
		tokens = append(tokens, []byte(tokenOf(t, m.data)))
	}
	waitFor(t, 20*time.Second, "every email marked sent", func() bool {
		return strings.Count(p.logs.String(), `msg="email sent"`) >= len(answered)
	})
	// No token is in the local files, even with the WAL never truncated:
	// messages are sealed with the key beside the database.
	noTokens := func(files ...string) {
		t.Helper()
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, token := range tokens {
				if bytes.Contains(b, token) {
					t.Fatalf("%s holds a token", f)
				}
			}
		}
	}
	noTokens(db, db+"-wal")

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("service exit %d", code)
	}
	ls.signal(t, syscall.SIGTERM)
	ls.wait(t, 30*time.Second)

	restored := filepath.Join(dir, "restored.db")
	if out, err := exec.Command(bin, "restore", "-config", config, "-o", restored, db).CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, out)
	}
	rdb, err := sql.Open("sqlite", "file:"+restored+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var check string
	if err := rdb.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the restored database: %q %v", check, err)
	}
	noTokens(restored)
	var n int
	mustScan(t, rdb.QueryRow(`SELECT count(*) FROM users`), &n)
	if n != len(answered) {
		t.Errorf("the restored database holds %d users; %d signups were answered", n, len(answered))
	}
}

// TestLitestreamStalledOnASmallVolume: the real Litestream replica stalls
// (SIGSTOP) holding its read transaction, so the WAL cannot be truncated
// while signups fill a small volume. The service never takes the last of
// the disk (writes refused with 503 below the reserve's room, the reserve
// given up for the replica), and once the replica resumes (SIGCONT) it
// catches up — the service nudges the WAL, which is what Litestream waits
// for — and signups are accepted again, with nothing done by hand.
func TestLitestreamStalledOnASmallVolume(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("litestream")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("litestream is not installed; .ci/run installs it")
		}
		t.Skip("litestream is not installed (.ci/run installs it)")
	}
	vol := smallVolume(t, "48m")
	dir := t.TempDir()
	db := filepath.Join(vol, "signup.db")
	config := filepath.Join(dir, "litestream.yml")
	os.WriteFile(config, fmt.Appendf(nil, litestreamYML, db, filepath.Join(dir, "replica")), 0o600)
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-db", db)...))
	ls := startCmd(t, exec.Command(bin, "replicate", "-config", config))
	waitFor(t, 20*time.Second, "litestream to start replicating", func() bool {
		entries, _ := os.ReadDir(filepath.Join(dir, "replica"))
		return len(entries) > 0
	})
	ls.signal(t, syscall.SIGSTOP)
	if !signupsUntilRefused(t, p.url, "fill", 5000, 5*time.Millisecond, 20) {
		t.Fatal("the volume never filled")
	}
	if f := volumeFree(vol); f < 4<<20 {
		t.Errorf("%d bytes left on the volume with the replica stalled: the service took the room it needs", f)
	}

	ls.signal(t, syscall.SIGCONT)
	waitFor(t, 60*time.Second, "a signup accepted again once the replica resumed", func() bool {
		res, _ := do(t, "POST", p.url+"/v1/users", `{"name": "After", "email": "after@example.com", "password": "pa55word1234"}`)
		return res.StatusCode == http.StatusAccepted
	})
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("service exit %d", code)
	}
	ls.signal(t, syscall.SIGTERM)
	ls.wait(t, 30*time.Second)
}
