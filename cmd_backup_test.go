package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

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
