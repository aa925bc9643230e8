package main

import (
	"fmt"
	"strings"
	"testing"
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
