package main

import (
	"testing"
	"time"
)

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
