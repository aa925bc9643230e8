package main

import (
	"net/http"
	"strings"
	"testing"
)

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

// TestJSONAnswersAreNotCached: every JSON answer — account data, a bearer
// token — is sent with Cache-Control: no-store and nosniff.
func TestJSONAnswersAreNotCached(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	res, err := http.Post(app.url+"/v1/tokens/authentication", "application/json", strings.NewReader(`{"email": "ada@example.com", "password": "pa55word1234"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	me := withBearer(t, "GET", app.url+"/v1/users/me", token)
	for what, h := range map[string]http.Header{"a login's token": res.Header, "the account": me.Header} {
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Cache-Control %q, X-Content-Type-Options %q; want no-store, nosniff", what, h.Get("Cache-Control"), h.Get("X-Content-Type-Options"))
		}
	}
}
