package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProductionGuards(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-env", "production", "-smtp-host", "mail.example.com"}, "production needs -base-url"},
		{[]string{"-env", "production", "-base-url", "http://signup.example.com"}, "production needs an https:// -base-url"},
		{[]string{"-base-url", "signup.example.com"}, "must be an http:// or https:// URL"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com"}, "production needs -smtp-host"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com", "-smtp-tls", "none"}, "refuses -smtp-tls none to mail.example.com"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com", "-bcrypt-cost", "8"}, "at least 10"},
		{[]string{"-env", "production", "-base-url", "https://signup.example.com", "-smtp-host", "mail.example.com"}, "production needs -smtp-sender with a fully qualified domain"},
		{[]string{"-cors-trusted-origins", "app.example.com"}, "not an origin"},
		{[]string{"-app-name", "Evil\r\nBcc: x"}, "without control characters"},
		{[]string{"-env", "staging"}, "development or production"},
		{[]string{"-bcrypt-cost", "3"}, "between 4 and 31"},
		{[]string{"-smtp-tls", "maybe"}, "starttls, tls or none"},
		{[]string{"-trusted-proxies", "nonsense"}, "not a CIDR"},
		{[]string{"-port", "x"}, "invalid value"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard, &stderr)
		if err == nil || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: error %v, stderr %q; want it to say %q", tt.args, err, stderr.String(), tt.want)
		}
	}
	// Loopback without TLS is allowed in production.
	if _, _, err := parseConfig([]string{"-env", "production", "-base-url", "http://127.0.0.1:4000", "-smtp-host", "127.0.0.1", "-smtp-tls", "none", "-smtp-sender", "Signup <no-reply@signup.example.com>"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("production on loopback without TLS: %v", err)
	}

	// The real binary exits 2 and says why.
	p := startBinaryNoWait(t, []string{"-env", "production", "-db", filepath.Join(t.TempDir(), "x.db"), "-base-url", "https://signup.example.com"})
	if code := p.wait(t, 20*time.Second); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(p.logs.String(), "production needs -smtp-host") {
		t.Errorf("output %q", p.logs)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SIGNUP_PORT": "5000", "SIGNUP_SMTP_PASSWORD": "from-env", "SIGNUP_LIMITER_ENABLED": "false"}
	cfg, _, err := parseConfig([]string{"-port", "6000"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.port != 6000 || cfg.smtpPassword != "from-env" || cfg.limiterEnabled {
		t.Errorf("port %d (want the flag's 6000), password %q, limiter %v", cfg.port, cfg.smtpPassword, cfg.limiterEnabled)
	}
	var stderr bytes.Buffer
	if _, _, err := parseConfig([]string{}, func(k string) string { return map[string]string{"SIGNUP_BCRYPT_COST": "lots"}[k] }, &stderr); err == nil {
		t.Error("a bad SIGNUP_BCRYPT_COST was accepted")
	}
	if !strings.Contains(stderr.String(), "SIGNUP_BCRYPT_COST") {
		t.Errorf("the error does not name the variable: %q", stderr.String())
	}

	// -h lists every flag and shows no secret taken from the environment.
	stderr.Reset()
	env["SIGNUP_SMTP_PASSWORD"] = "hunter2"
	_, _, err = parseConfig([]string{"-h"}, func(k string) string { return env[k] }, &stderr)
	if err == nil {
		t.Error("-h did not stop")
	}
	for _, flag := range []string{"-port", "-env", "-db", "-smtp-host", "-smtp-port", "-smtp-username", "-smtp-password", "-smtp-sender",
		"-smtp-tls", "-mail-dir", "-bcrypt-cost", "-shutdown-timeout", "-mail-retry-min", "-mail-retry-max",
		"-limiter-enabled", "-limiter-rps", "-limiter-burst", "-trusted-proxies", "-version", "-host", "-base-url", "-app-name", "-templates",
		"-cors-trusted-origins", "-smtp-helo", "-max-conns", "-max-conns-per-client", "-checkpoint-interval", "-mail-claim-lease"} {
		if !strings.Contains(stderr.String(), "  "+flag) {
			t.Errorf("-h does not list %s", flag)
		}
	}
	if strings.Contains(stderr.String(), "hunter2") {
		t.Error("-h shows the SMTP password")
	}
}

// TestWarnsWhenTheAppCannotSeeTheCookie: at start, signup warns when
// -app-url's host cannot see the session cookie (the proxy recipe left at
// the default -base-url loops on login), and not when it can.
func TestWarnsWhenTheAppCannotSeeTheCookie(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	for _, c := range []struct {
		args []string
		warn bool
	}{
		{[]string{"-app-url", "http://127.0.0.1:8080/"}, true}, // -base-url left at http://localhost:<port>
		{[]string{"-app-url", "http://localhost:8080/"}, false},
		{[]string{"-app-url", "https://app.example.com/", "-base-url", "https://signup.example.com", "-cookie-domain", "example.com"}, false},
		{[]string{"-app-url", "https://app.example.com/", "-base-url", "https://signup.example.org"}, true},
	} {
		p := startRun(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), c.args...)...), nil)
		p.cancel()
		<-p.done
		if got := containsLine(p.logs.String(), "level=WARN", "cannot see the session cookie"); got != c.warn {
			t.Errorf("%v: warned %v, want %v", c.args, got, c.warn)
		}
	}
}
