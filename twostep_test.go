package main

import (
	"encoding/json"
	"image/png"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// oathCode is the TOTP code of secret at at, from Debian's oathtool: a
// source of codes that nobody here wrote.
func oathCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	tool := needTool(t, "oathtool", "oathtool")
	out, err := exec.Command(tool, "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var (
	secretRE   = regexp.MustCompile(`<code>([A-Z2-7]{16,})</code>`)
	recoveryRE = regexp.MustCompile(`<code>([A-Z2-7]{5}-[A-Z2-7]{5})</code>`)
)

// turnOnTwoStep turns two-step verification on from v's account page at
// the app's time now, and returns the secret and the recovery codes.
func turnOnTwoStep(t *testing.T, v *visitor, password string, now time.Time) (string, []string) {
	t.Helper()
	a := v.post("/account/two-step", url.Values{"action": {"start"}, "current_password": {password}})
	m := secretRE.FindStringSubmatch(a.body)
	if a.status != 200 || m == nil {
		t.Fatalf("start two-step: %d\n%s", a.status, a.body)
	}
	a = v.post("/account/two-step", url.Values{"action": {"confirm"}, "code": {oathCode(t, m[1], now)}})
	codes := recoveryRE.FindAllStringSubmatch(a.body, -1)
	if a.status != 200 || len(codes) != recoveryCodeCount {
		t.Fatalf("confirm two-step: %d, %d recovery codes\n%s", a.status, len(codes), a.body)
	}
	var list []string
	for _, c := range codes {
		list = append(list, c[1])
	}
	return m[1], list
}

// TestTwoStepOnThePages turns two-step verification on from the account
// page with a code from oathtool, then logs in with a code, a recovery
// code, and is refused a code used once, a code two steps old and a spent
// recovery code; wrong codes are throttled as passwords are; sensitive
// changes ask for a code; turning it off tells the address and the app.
func TestTwoStepOnThePages(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	hooks := startReceiver(t, nil)
	app := newTestApp(t, srv, webhookArgs(hooks))
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { // the app's clock, d after start, set
		now := start.Add(d)
		app.setClock(func() time.Time { return now })
		return now
	}
	clock := at(0)
	activatedAccount(t, app, srv, "ada@example.com")
	v := newVisitor(t, app.url)
	v.logIn("ada@example.com", "pa55word1234")

	// Turning it on: a wrong first code is refused, the QR code is a PNG.
	a := v.post("/account/two-step", url.Values{"action": {"start"}, "current_password": {"pa55word1234"}})
	secret := secretRE.FindStringSubmatch(a.body)[1]
	res, err := v.client.Get(app.url + "/account/two-step/qr.png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(res.Body)
	res.Body.Close()
	if err != nil || img.Bounds().Dx() != 240 || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the QR code: %v %v %q", err, img, res.Header.Get("Cache-Control"))
	}
	if a := v.post("/account/two-step", url.Values{"action": {"confirm"}, "code": {"000000"}}); a.status != 422 || !strings.Contains(a.body, secret) {
		t.Errorf("a wrong first code: %d", a.status)
	}
	secret, codes := turnOnTwoStep(t, v, "pa55word1234", clock)
	waitFor1(t, srv, "ada@example.com", "Two-step verification is on")
	hooks.waitEvent(eventTwoStepOn, "ada@example.com")
	if page := v.get("/account").body; !strings.Contains(page, "Recovery codes left: 10") {
		t.Errorf("the account page does not say two-step verification is on")
	}

	// Logging in: the password, then a code.
	login := func(code string) pageAnswer {
		t.Helper()
		b := newVisitor(t, app.url)
		a := b.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}})
		m := regexp.MustCompile(`name="challenge" value="([A-Z2-7]{26})"`).FindStringSubmatch(a.body)
		if a.status == http.StatusTooManyRequests {
			return a // the throttle, at the password
		}
		if a.status != 200 || m == nil || b.cookie("signup_session") != "" {
			t.Fatalf("the password of an account with two-step verification: %d, a session %q\n%s", a.status, b.cookie("signup_session"), a.body)
		}
		a = b.post("/login/code", url.Values{"challenge": {m[1]}, "code": {code}})
		if a.status == http.StatusSeeOther && b.cookie("signup_session") == "" {
			t.Error("a login by code without a session")
		}
		return a
	}
	if a := login(oathCode(t, secret, clock)); a.status != 401 {
		t.Errorf("the code that turned it on, again: %d, want 401", a.status)
	}
	clock = at(30 * time.Second)
	code := oathCode(t, secret, clock)
	if a := login(code); a.status != http.StatusSeeOther {
		t.Errorf("a fresh code: %d, want 303", a.status)
	}
	if a := login(code); a.status != 401 || !strings.Contains(a.body, "used already") {
		t.Errorf("the same code twice: %d, want 401", a.status)
	}
	at(90 * time.Second)
	if a := login(oathCode(t, secret, start.Add(60*time.Second))); a.status != http.StatusSeeOther {
		t.Errorf("a code one step old (clock drift): %d, want 303", a.status)
	}
	at(150 * time.Second)
	if a := login(oathCode(t, secret, start.Add(90*time.Second))); a.status != 401 {
		t.Errorf("a code two steps old: %d, want 401", a.status)
	}
	if a := login(strings.ToLower(codes[0])); a.status != http.StatusSeeOther {
		t.Errorf("a recovery code: %d, want 303", a.status)
	}
	waitFor1(t, srv, "ada@example.com", "recovery code")
	hooks.waitEvent(eventRecoveryUsed, "ada@example.com")
	if a := login(codes[0]); a.status != 401 {
		t.Errorf("a spent recovery code: %d, want 401", a.status)
	}

	// Wrong codes are throttled like passwords: typing the password again
	// does not start the count over.
	var last pageAnswer
	for range maxFailedLogins {
		if last = login("123456"); last.status == http.StatusTooManyRequests {
			break
		}
	}
	if last.status != http.StatusTooManyRequests {
		t.Errorf("wrong codes past the throttle: %d, want 429", last.status)
	}

	// A sensitive change asks for a code too.
	at(3 * time.Minute)
	if a := v.post("/account/password", url.Values{"current_password": {"pa55word1234"}, "password": {"new-password-1"}}); a.status != 422 || !strings.Contains(a.body, "Two-step verification is on") {
		t.Errorf("a new password without a code: %d", a.status)
	}
	clock = at(4 * time.Minute)
	if a := v.post("/account/two-step", url.Values{"action": {"off"}, "current_password": {"pa55word1234"}, "code": {oathCode(t, secret, clock)}}); a.status != 200 {
		t.Errorf("turning it off: %d", a.status)
	}
	waitFor1(t, srv, "ada@example.com", "Two-step verification is off")
	hooks.waitEvent(eventTwoStepOff, "ada@example.com")
	at(loginWindow + 5*time.Minute) // the throttle's window past
	if a := newVisitor(t, app.url).post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}}); a.status != http.StatusSeeOther {
		t.Errorf("the password alone after turning it off: %d, want 303", a.status)
	}
}

// TestTwoStepAcrossInstances: by the API, on two instances sharing
// PostgreSQL (and on SQLite with one), the right password is answered with
// a challenge, no token; a code exchanges it at the other instance; the
// same code is refused on either; a change asks for a code.
func TestTwoStepAcrossInstances(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			args = append(args, "-db", db)
			a, b := startInstances(t, engine, args)
			signup(t, a.url, "ada@example.com")
			activate(t, a.url, waitFor1(t, srv, "ada@example.com", "Activate"))
			va := newVisitor(t, strings.Replace(a.url, "127.0.0.1", "localhost", 1))
			va.logIn("ada@example.com", "pa55word1234")
			now := time.Now()
			secret, _ := turnOnTwoStep(t, va, "pa55word1234", now)

			status, body := post(t, "POST", b.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "pa55word1234"})
			step, _ := body["two_step"].(map[string]any)
			challenge, _ := step["challenge"].(string)
			if status != 202 || challenge == "" || body["authentication_token"] != nil {
				t.Fatalf("the right password: %d %v, want 202 and a challenge, no token", status, body)
			}
			code := oathCode(t, secret, now.Add(30*time.Second)) // the next step's: the first is taken
			status, body = post(t, "POST", a.url+"/v1/tokens/two-step", map[string]string{"challenge": challenge, "code": code})
			auth, _ := body["authentication_token"].(map[string]any)
			token, _ := auth["token"].(string)
			if status != 201 || token == "" {
				t.Fatalf("the challenge and a code at the other instance: %d %v", status, body)
			}
			_, body = post(t, "POST", a.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "pa55word1234"})
			again := body["two_step"].(map[string]any)["challenge"].(string)
			for _, instance := range []*process{a, b} {
				if status, _ := post(t, "POST", instance.url+"/v1/tokens/two-step", map[string]string{"challenge": again, "code": code}); status != 401 {
					t.Errorf("the same code again: %d, want 401", status)
				}
			}
			if status, _ := post(t, "POST", b.url+"/v1/tokens/two-step", map[string]string{"challenge": challenge, "code": oathCode(t, secret, now.Add(60*time.Second))}); status != 401 {
				t.Errorf("a challenge used once: %d, want 401", status)
			}

			// A change by the API asks for a code.
			status, body = bearerDo(t, "PUT", b.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"})
			if errs, _ := body["error"].(map[string]any); status != 422 || errs["code"] == nil {
				t.Errorf("a new password without a code: %d %v", status, body)
			}
			if got := withBearerStatus(t, "GET", b.url+"/v1/users/me", token); got != 200 {
				t.Errorf("the token from the second step: %d", got)
			}
			var shown shownUser
			if err := json.Unmarshal([]byte(mustUsers(t, db, nil, "show", "ada@example.com", "-json")), &shown); err != nil ||
				!shown.TwoStep.On || shown.TwoStep.RecoveryCodesLeft != recoveryCodeCount {
				t.Errorf("users show: two-step %+v (%v)", shown.TwoStep, err)
			}
			var left int
			st, err := openStore(db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			mustScan(t, st.read.QueryRow(`SELECT count(*) FROM recovery_codes`), &left)
			if left != recoveryCodeCount {
				t.Errorf("%d recovery codes stored, want %d", left, recoveryCodeCount)
			}
			var plain int
			mustScan(t, st.read.QueryRow(`SELECT count(*) FROM two_step WHERE secret = $1`, []byte(secret)), &plain)
			if engine == "sqlite" && plain != 0 {
				t.Error("the TOTP secret is stored unsealed on SQLite")
			}
		})
	}
}
