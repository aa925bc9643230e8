package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestInputRules(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	user := func(name, email, password string) string {
		b, _ := json.Marshal(map[string]string{"name": name, "email": email, "password": password})
		return string(b)
	}
	ok := func(name, email, password string) string { return user(name, email, password) }
	tests := []struct {
		name   string
		body   string
		status int
		field  string // for 422: the field that must carry the message
		want   string // a part of the error message
	}{
		{"empty body", ``, 400, "", "body must not be empty"},
		{"badly-formed", `{"name": "a",}`, 400, "", "badly-formed JSON (at character 14)"},
		{"truncated", `{"name": "a"`, 400, "", "badly-formed JSON"},
		{"wrong type", `{"name": 42}`, 400, "", `incorrect JSON type for field "name"`},
		{"not an object", `["a"]`, 400, "", "must be a JSON object"},
		{"unknown key", `{"nickname": "a"}`, 400, "", `unknown key "nickname"`},
		{"two values", `{}{}`, 400, "", "single JSON value"},
		{"invalid UTF-8", "{\"name\": \"\xff\"}", 400, "", "valid UTF-8"},
		{"too large", `{"name": "` + strings.Repeat("a", 1<<20) + `"}`, 413, "", "must not be larger than 1048576 bytes"},
		{"name missing", user("", "a@example.com", "pa55word"), 422, "name", "must be provided"},
		{"name too long", user(strings.Repeat("é", 251), "a@example.com", "pa55word"), 422, "name", "500 bytes"},
		{"name with CR/LF", user("Eve\r\nBcc: x@evil.example", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"name with a bell", user("Eve\a", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"name with a bidi override", user("Tina\u202egpj.exe", "a@example.com", "pa55word"), 422, "name", "format characters"},
		{"name with a URL", user("Win a prize https://evil.example", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with www.", user("see www.evil", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with a host name", user("Visit evil.example.com now", "a@example.com", "pa55word"), 422, "name", "web address"},
		{"name with initials", ok("J. R. R. Tolkien", "jrr@example.com", "pa55word"), 202, "", ""},
		{"email missing", user("A", "", "pa55word"), 422, "email", "must be provided"},
		{"email with an address literal", user("A", "root@[127.0.0.1]", "pa55word"), 422, "email", "not an IP address"},
		{"email with a one-label domain", user("A", "postmaster@localhost", "pa55word"), 422, "email", "two labels"},
		{"email with an IP address for a domain", user("A", "a@127.0.0.1", "pa55word"), 422, "email", "two labels"},
		{"name with a line separator", user("Eve Bcc", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"name with a paragraph separator", user("Eve Bcc", "a@example.com", "pa55word"), 422, "name", "control characters"},
		{"email a@e", user("A", "a@e", "pa55word"), 422, "email", "two labels"},
		{"email without @", user("A", "not-an-email", "pa55word"), 422, "email", "valid email address"},
		{"email with display name", user("A", "Alice <a@example.com>", "pa55word"), 422, "email", ""},
		{"email list", user("A", "a@example.com,b@example.com", "pa55word"), 422, "email", "valid email address"},
		{"email with CR/LF", user("A", "a@example.com\r\nBcc: x@evil.example", "pa55word"), 422, "email", ""},
		{"email with space", user("A", "a b@example.com", "pa55word"), 422, "email", ""},
		{"email not ASCII", user("A", "jöran@example.com", "pa55word"), 422, "email", "ASCII"},
		{"email too long", user("A", strings.Repeat("a", 250)+"@example.com", "pa55word"), 422, "email", "254 bytes"},
		{"password missing", user("A", "a@example.com", ""), 422, "password", "must be provided"},
		{"password too short", user("A", "a@example.com", "1234567"), 422, "password", "at least 8 characters"},
		{"password too long", user("A", "a@example.com", strings.Repeat("p", 73)), 422, "password", "not be more than 72 characters"},
		{"password of 7 characters in 21 bytes", user("A", "a@example.com", strings.Repeat("密", 7)), 422, "password", "at least 8 characters"},
		{"password of 8 characters", ok("Ann", "ann@example.com", "12345678"), 202, "", ""},
		{"password of 72 characters", ok("Bo", "bo@example.com", strings.Repeat("p", 72)), 202, "", ""},
		{"password of 40 characters in 80 bytes", ok("Cy", "cy2@example.com", strings.Repeat("é", 40)), 202, "", ""},
		{"name of 500 bytes, unicode", ok(strings.Repeat("é", 250), "cy@example.com", "pa55word"), 202, "", ""},
		{"duplicate, other case: the same answer", ok("Ann", "ANN@Example.com", "pa55word"), 202, "", ""},
	}
	for _, tt := range tests { // not parallel: the duplicate case needs the earlier signup
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, "POST", app.url+"/v1/users", tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %v", res.StatusCode, tt.status, body)
			}
			switch {
			case tt.status == 202:
				if msg, _ := body["message"].(string); msg == "" || len(body) != 1 {
					t.Errorf("answer %v, want a message alone", body)
				}
			case tt.field != "":
				errs, isMap := body["error"].(map[string]any)
				if !isMap {
					t.Fatalf("error %v is not per field", body["error"])
				}
				if msg, _ := errs[tt.field].(string); !strings.Contains(msg, tt.want) || msg == "" {
					t.Errorf("error for %s = %q, want it to say %q", tt.field, msg, tt.want)
				}
			default:
				if msg, _ := body["error"].(string); !strings.Contains(msg, tt.want) {
					t.Errorf("error %q, want it to say %q", msg, tt.want)
				}
			}
		})
	}
}

// TestFormNamesMustBeUTF8: a form's body is not JSON, which readJSON holds
// to UTF-8: a name that is not UTF-8 is refused (422), never stored, so it
// cannot reach Remote-Name as raw bytes, nor PostgreSQL, which refuses it.
func TestFormNamesMustBeUTF8(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	status, body := form(t, app.url, "/signup", url.Values{"name": {"Eve\xff\xfe"}, "email": {"eve@example.com"}, "password": {"pa55word1234"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "control characters") {
		t.Errorf("a name that is not UTF-8: %d, want 422 naming the rule", status)
	}
	var n int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM users`), &n)
	if n != 0 {
		t.Errorf("%d accounts stored", n)
	}
}
