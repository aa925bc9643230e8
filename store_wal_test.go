package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

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

// TestCheckpointBlamesOnlyAnotherProcess: a checkpoint kept from
// truncating the WAL by the service's own reader says nothing of another
// process (and is tried again at the next chore); one kept by another
// process's reader says so.
func TestCheckpointBlamesOnlyAnotherProcess(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	signup(t, app.url, "ada@example.com")
	const blame = "another process"

	ctx := context.Background()
	own, err := app.store.read.Conn(ctx) // the read pool's own: a snapshot held open
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		t.Fatal(err)
	}
	var n int
	mustScan(t, own.QueryRowContext(ctx, `SELECT count(*) FROM users`), &n)
	signup(t, app.url, "bob@example.com") // the WAL grows past the own reader's snapshot
	srv.waitMessages(t, 2, 10*time.Second)
	app.housekeeping() // its first chore checkpoints at once
	own.ExecContext(ctx, "ROLLBACK")
	own.Close()
	if containsLine(app.logs.String(), blame) {
		t.Errorf("the service's own reader was taken for another process:\n%s", app.logs)
	}

	other, err := sql.Open("sqlite", "file:"+app.cfg.db)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	snapshot, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer snapshot.Rollback()
	mustScan(t, snapshot.QueryRow(`SELECT count(*) FROM users`), &n)
	signup(t, app.url, "cy@example.com")
	srv.waitMessages(t, 3, 10*time.Second)
	waitFor(t, 10*time.Second, "the service's own work done", func() bool {
		return app.store.read.Stats().InUse == 0 && app.store.write.Stats().InUse == 0
	})
	app.housekeeping()
	if !containsLine(app.logs.String(), "level=WARN", blame) {
		t.Errorf("another process's reader kept the WAL, and the log does not say so:\n%s", app.logs)
	}
}
