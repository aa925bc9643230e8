package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
