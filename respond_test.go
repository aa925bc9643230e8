package main

import (
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
