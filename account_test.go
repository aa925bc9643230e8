package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// bearerDo sends body as JSON with the bearer token and returns the status
// and the decoded answer (nil for an empty one).
func bearerDo(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// activatedAccount signs address up, activates it with its signup password
// (pa55word1234) and returns a bearer token of it; the welcome email is
// the first message to it at srv.
func activatedAccount(t *testing.T, app *testApp, srv *testSMTP, address string) string {
	t.Helper()
	signup(t, app.url, address)
	activate(t, app.url, waitFor1(t, srv, address, "Activate"))
	_, _, token := login(t, app.url, address, "pa55word1234")
	if token == "" {
		t.Fatalf("no bearer token for %s", address)
	}
	return token
}

// waitFor1 waits for a message to address whose subject has subject, and
// returns it.
func waitFor1(t *testing.T, srv *testSMTP, address, subject string) received {
	t.Helper()
	var found received
	waitFor(t, 10*time.Second, "an email to "+address+" about "+subject, func() bool {
		for _, m := range srv.messages() {
			if m.to == address && strings.Contains(subjectOf(m.data), subject) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// emailsTo is how many messages srv has for address whose subject has subject.
func emailsTo(srv *testSMTP, address, subject string) int {
	n := 0
	for _, m := range srv.messages() {
		if m.to == address && strings.Contains(subjectOf(m.data), subject) {
			n++
		}
	}
	return n
}

// subjectOf is a message's Subject header.
func subjectOf(msg []byte) string {
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	for line := range strings.SplitSeq(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			return v
		}
	}
	return ""
}

// confirmLink is the /confirm-email token of an address change's email.
func confirmLink(t *testing.T, msg received) string {
	t.Helper()
	_, token := linkOf(t, msg.data)
	return token
}

// TestAccountByAPI, on both engines: a script with a bearer token changes the address (both
// halves confirmed), lists and ends sessions, changes the password (every
// other session ends) and deletes the account; each with its email, from
// which a retry could compose it again.
func TestAccountByAPI(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, nil)
			app := newTestApp(t, srv, func(cfg *config) { cfg.db = newDB(t) })
			testAccountByAPI(t, app, srv)
		})
	}
}

func testAccountByAPI(t *testing.T, app *testApp, srv *testSMTP) {
	me := app.url + "/v1/users/me"
	token := activatedAccount(t, app, srv, "ada@example.com")
	_, _, second := login(t, app.url, "ada@example.com", "pa55word1234")

	// Sessions: both bearer tokens, this one marked, no secret.
	status, body := bearerDo(t, "GET", me+"/sessions", token, nil)
	sessions, _ := body["sessions"].([]any)
	if status != 200 || len(sessions) != 2 {
		t.Fatalf("sessions: %d %v", status, body)
	}
	var other string
	for _, s := range sessions {
		s := s.(map[string]any)
		if strings.Contains(fmt.Sprint(s), token) || strings.Contains(fmt.Sprint(s), second) {
			t.Errorf("a session shows its token: %v", s)
		}
		if s["current"] != true {
			other = s["id"].(string)
		}
	}
	if status, _ := bearerDo(t, "DELETE", me+"/sessions/"+other, token, nil); status != 204 {
		t.Errorf("end the other session: %d", status)
	}
	if status, _ := bearerDo(t, "GET", me, second, nil); status != 401 {
		t.Errorf("the ended session: %d, want 401", status)
	}
	if status, _ := bearerDo(t, "DELETE", me+"/sessions/"+other, token, nil); status != 404 {
		t.Errorf("end it again: %d, want 404", status)
	}

	// The address: a link to each, neither alone enough.
	for _, c := range []struct {
		body map[string]string
		want string
	}{
		{map[string]string{"email": "ada.new@example.com", "current_password": "wrong-password"}, "current_password"},
		{map[string]string{"email": "not an address", "current_password": "pa55word1234"}, "email"},
		{map[string]string{"email": "ADA@example.com", "current_password": "pa55word1234"}, "email"},
	} {
		if status, body := bearerDo(t, "POST", me+"/email", token, c.body); status != 422 || body["error"].(map[string]any)[c.want] == nil {
			t.Errorf("email change %v: %d %v, want 422 on %s", c.body, status, body, c.want)
		}
	}
	status, body = bearerDo(t, "POST", me+"/email", token, map[string]string{"email": "ada.new@example.com", "current_password": "pa55word1234"})
	if status != 202 {
		t.Fatalf("email change: %d %v", status, body)
	}
	oldHalf := confirmLink(t, waitFor1(t, srv, "ada@example.com", "Confirm the new email address"))
	newHalf := confirmLink(t, waitFor1(t, srv, "ada.new@example.com", "Confirm the new email address"))
	if status, body := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": newHalf}); status != 200 {
		t.Fatalf("confirm the new half: %d %v", status, body)
	}
	if _, body := bearerDo(t, "GET", me, token, nil); body["user"].(map[string]any)["email"] != "ada@example.com" {
		t.Errorf("one half confirmed moved the account: %v", body)
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": newHalf}); status != 422 {
		t.Errorf("a half confirmed twice: %d, want 422", status)
	}
	if status, body := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": oldHalf}); status != 200 || !strings.Contains(body["message"].(string), "both") {
		t.Fatalf("confirm the old half: %d %v", status, body)
	}
	if _, body := bearerDo(t, "GET", me, token, nil); body["user"].(map[string]any)["email"] != "ada.new@example.com" {
		t.Errorf("both halves confirmed, the account has %v", body)
	}
	changed := waitFor1(t, srv, "ada@example.com", "has a new email address")
	if plain, _ := parts(t, changed.data); !strings.Contains(plain, "ada.new@example.com") || !strings.Contains(plain, app.cfg.baseURL+"/undo-email?token=") { // the way back, for an owner who did not make the change
		t.Errorf("the email-changed email:\n%s", plain)
	}
	if status, _, _ := login(t, app.url, "ada.new@example.com", "pa55word1234"); status != 201 {
		t.Errorf("log in at the new address: %d", status)
	}

	// The password: every other session ends, this one stays.
	_, _, third := login(t, app.url, "ada.new@example.com", "pa55word1234")
	if status, body := bearerDo(t, "PUT", me+"/password", token, map[string]string{"current_password": "wrong-password", "password": "new-password-1"}); status != 422 || body["error"].(map[string]any)["current_password"] == nil {
		t.Errorf("a wrong current password: %d %v", status, body)
	}
	if status, body := bearerDo(t, "PUT", me+"/password", token, map[string]string{"current_password": "pa55word1234", "password": "short"}); status != 422 || body["error"].(map[string]any)["password"] == nil {
		t.Errorf("a short new password: %d %v", status, body)
	}
	if status, body := bearerDo(t, "PUT", me+"/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"}); status != 200 {
		t.Fatalf("change the password: %d %v", status, body)
	}
	if status, _ := bearerDo(t, "GET", me, third, nil); status != 401 {
		t.Errorf("another session after the change: %d, want 401", status)
	}
	if status, _ := bearerDo(t, "GET", me, token, nil); status != 200 {
		t.Errorf("the session that changed it: %d, want 200", status)
	}
	passwordIs(t, app.url, "ada.new@example.com", "new-password-1", "pa55word1234")
	notice := waitFor1(t, srv, "ada.new@example.com", "password was changed")
	if plain, _ := parts(t, notice.data); !strings.Contains(plain, app.cfg.baseURL+"/forgot-password") || !strings.Contains(plain, "If you did not") {
		t.Errorf("the password-changed email:\n%s", plain)
	}

	// Deletion: everything of the account goes; the budget records stay.
	var sendsBefore int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM sends`), &sendsBefore)
	if status, body := bearerDo(t, "DELETE", me, token, map[string]string{"current_password": "pa55word1234"}); status != 422 {
		t.Errorf("delete with a wrong password: %d %v", status, body)
	}
	if status, body := bearerDo(t, "DELETE", me, token, map[string]string{"current_password": "new-password-1"}); status != 204 {
		t.Fatalf("delete: %d %v", status, body)
	}
	if status, _ := bearerDo(t, "GET", me, token, nil); status != 401 {
		t.Errorf("the session of a deleted account: %d, want 401", status)
	}
	gone := waitFor1(t, srv, "ada.new@example.com", "account was deleted")
	if plain, _ := parts(t, gone.data); !strings.Contains(plain, "deleted") || strings.Contains(plain, "token") {
		t.Errorf("the account-deleted email:\n%s", plain)
	}
	for table, want := range map[string]int{"users": 0, "tokens": 0, "email_changes": 0, "sends": sendsBefore + 1} {
		var n int
		mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM `+table), &n)
		if n != want {
			t.Errorf("%s: %d rows after the deletion, want %d", table, n, want)
		}
	}
	var rows int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM outbox WHERE user_id IS NULL AND kind = 'account-deleted'`), &rows)
	if rows != 1 {
		t.Errorf("the account-deleted email's row: %d, want 1 with no user", rows)
	}
	if status, _, _ := login(t, app.url, "ada.new@example.com", "new-password-1"); status != 401 {
		t.Errorf("log in to the deleted account: %d", status)
	}
}

// TestEmailChangeToATakenAddress, on both engines: the answer is the same whether the new
// address has an account; its owner gets the account-exists email, no
// link, and the change can never complete.
func TestEmailChangeToATakenAddress(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, nil)
			app := newTestApp(t, srv, func(cfg *config) { cfg.db = newDB(t) })
			testEmailChangeToATakenAddress(t, app, srv)
		})
	}
}

func testEmailChangeToATakenAddress(t *testing.T, app *testApp, srv *testSMTP) {
	activatedAccount(t, app, srv, "owner@example.com")
	signup(t, app.url, "pending@example.com")
	waitFor1(t, srv, "pending@example.com", "Activate")

	// Three accounts each ask to move: to a free address, to an activated
	// account's, to a pending signup's.
	tokens := map[string]string{}
	var answers []string
	for _, c := range []struct{ from, to string }{
		{"a@example.com", "free@example.com"}, {"b@example.com", "owner@example.com"}, {"c@example.com", "pending@example.com"},
	} {
		tokens[c.from] = activatedAccount(t, app, srv, c.from)
		status, body := bearerDo(t, "POST", app.url+"/v1/users/me/email", tokens[c.from], map[string]string{"email": c.to, "current_password": "pa55word1234"})
		answers = append(answers, fmt.Sprint(status, body))
	}
	if answers[0] != answers[1] || answers[0] != answers[2] || !strings.HasPrefix(answers[0], "202") {
		t.Errorf("answers differ by the new address's state: %q", answers)
	}
	waitFor1(t, srv, "owner@example.com", "tried to sign up")
	if n := emailsTo(srv, "owner@example.com", "Confirm"); n != 0 {
		t.Errorf("the owner of the taken address got %d confirmation links", n)
	}

	// To the taken address: the current address's half confirms, and the
	// change never completes.
	half := confirmLink(t, waitFor1(t, srv, "b@example.com", "Confirm the new"))
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": half}); status != 200 {
		t.Errorf("the current address's half: %d", status)
	}
	if _, body := bearerDo(t, "GET", app.url+"/v1/users/me", tokens["b@example.com"], nil); body["user"].(map[string]any)["email"] != "b@example.com" {
		t.Errorf("moved to a taken address: %v", body)
	}

	// To the pending signup's address: both halves move the account there,
	// and the pending signup that held the address is gone.
	for _, to := range []string{"c@example.com", "pending@example.com"} {
		h := confirmLink(t, waitFor1(t, srv, to, "Confirm the new"))
		if status, body := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": h}); status != 200 {
			t.Fatalf("confirm from %s: %d %v", to, status, body)
		}
	}
	if _, body := bearerDo(t, "GET", app.url+"/v1/users/me", tokens["c@example.com"], nil); body["user"].(map[string]any)["email"] != "pending@example.com" {
		t.Errorf("the account after both confirmations: %v", body)
	}
	var n int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM users WHERE email_key = 'pending@example.com'`), &n)
	if n != 1 {
		t.Errorf("%d accounts hold the address", n)
	}

	// A change asked again replaces the one before: its links die.
	first := confirmLink(t, waitFor1(t, srv, "a@example.com", "Confirm the new"))
	bearerDo(t, "POST", app.url+"/v1/users/me/email", tokens["a@example.com"], map[string]string{"email": "free2@example.com", "current_password": "pa55word1234"})
	waitFor1(t, srv, "free2@example.com", "Confirm the new")
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": first}); status != 422 {
		t.Errorf("a link of a replaced change: %d, want 422", status)
	}
}

// TestStolenSessionAlone: a session without the password can neither
// move, delete nor re-password the account, and cannot guess the password
// any faster than a login can; with the password but without the current
// inbox, a move never completes.
func TestStolenSessionAlone(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	stolen := activatedAccount(t, app, srv, "victim@example.com")
	me := app.url + "/v1/users/me"
	statuses := []int{}
	for i := range maxFailedLogins + 1 {
		guess := fmt.Sprintf("guess-%d-password", i)
		var status int
		switch i % 3 {
		case 0:
			status, _ = bearerDo(t, "POST", me+"/email", stolen, map[string]string{"email": "thief@example.com", "current_password": guess})
		case 1:
			status, _ = bearerDo(t, "DELETE", me, stolen, map[string]string{"current_password": guess})
		case 2:
			status, _ = bearerDo(t, "PUT", me+"/password", stolen, map[string]string{"current_password": guess, "password": "thiefs-password"})
		}
		statuses = append(statuses, status)
	}
	if fmt.Sprint(statuses) != "[422 422 422 422 422 429]" {
		t.Errorf("guesses through a stolen session: %v, want five 422 then 429", statuses)
	}
	if n := emailsTo(srv, "thief@example.com", ""); n != 0 {
		t.Errorf("the thief's address got %d emails", n)
	}

	// With the password too: the move needs the victim's inbox.
	app.store.write.Exec(`DELETE FROM login_attempts`)
	if status, _ := bearerDo(t, "POST", me+"/email", stolen, map[string]string{"email": "thief@example.com", "current_password": "pa55word1234"}); status != 202 {
		t.Fatal(status)
	}
	thiefs := confirmLink(t, waitFor1(t, srv, "thief@example.com", "Confirm"))
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": thiefs}); status != 200 {
		t.Fatal(status)
	}
	if _, body := bearerDo(t, "GET", me, stolen, nil); body["user"].(map[string]any)["email"] != "victim@example.com" {
		t.Errorf("the thief's half alone moved the account: %v", body)
	}
	// The victim's own link cancels it.
	victims := confirmLink(t, waitFor1(t, srv, "victim@example.com", "Confirm"))
	status, page := form(t, app.url, "/confirm-email", map[string][]string{"token": {victims}, "action": {"cancel"}})
	if status != 200 || !strings.Contains(page, "cancelled") {
		t.Errorf("cancel: %d\n%s", status, page)
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": victims}); status != 422 {
		t.Errorf("the cancelled change's link: %d, want 422", status)
	}
}

// TestNoticeOverBudget: a change made with the password alone is refused
// when the address's budget has no room for its email (nothing changes);
// the same answer as ever for an address change over the new address's
// budget.
func TestNoticeOverBudget(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	// A stranger's spending of the address's budget stops nothing the owner does.
	for range budgets[allowanceStranger].perHour {
		app.store.write.Exec(`INSERT INTO sends (address_key, sent_at) VALUES ('ada@example.com', $1)`, millis(time.Now()))
	}
	if status, body := bearerDo(t, "PUT", app.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "pa55word1234"}); status != 200 {
		t.Fatalf("a password change with the strangers' allowance spent: %d %v, want 200", status, body)
	}
	// The owner's own allowance spent, a change made with the password alone is refused.
	for range budgets[allowanceOwner].perHour - 1 { // the password-changed email was one
		app.store.write.Exec(`INSERT INTO sends (address_key, sent_at) VALUES ('owner:ada@example.com', $1)`, millis(time.Now()))
	}
	status, body := bearerDo(t, "PUT", app.url+"/v1/users/me/password", token, map[string]string{"current_password": "pa55word1234", "password": "new-password-1"})
	if status != 429 || !strings.Contains(fmt.Sprint(body), "nothing changed") {
		t.Errorf("a password change over budget: %d %v", status, body)
	}
	if status, _ := bearerDo(t, "DELETE", app.url+"/v1/users/me", token, map[string]string{"current_password": "pa55word1234"}); status != 429 {
		t.Errorf("a deletion over budget: %d", status)
	}
	passwordIs(t, app.url, "ada@example.com", "pa55word1234", "new-password-1")
}

// TestSessionsAreHashed: a session is stored as the SHA-256 hash of its
// token only.
func TestSessionsAreHashed(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	sum := sha256.Sum256([]byte(token))
	var n int
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE hash = $1 AND scope = 'authentication'`, sum[:]), &n)
	if n != 1 {
		t.Errorf("sessions stored under the token's hash: %d, want 1", n)
	}
	mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM tokens WHERE session_id = $1 OR user_agent = $1 OR hash = $1`, token), &n)
	if n != 0 {
		t.Error("a token stored in clear")
	}
}

// TestResetNoticeOverBudget: a reset by its emailed link sets the password
// even when the address's budget has no room for the "password changed"
// email — the inbox took part — and says so in a warning.
func TestResetNoticeOverBudget(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedAccount(t, app, srv, "ada@example.com")
	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	for range budgets[allowanceOwner].perHour { // the owner's allowance spent
		app.store.write.Exec(`INSERT INTO sends (address_key, sent_at) VALUES ('owner:ada@example.com', $1)`, millis(time.Now()))
	}
	if status, body := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": reset, "password": "new-password-1"}); status != 200 {
		t.Fatalf("reset: %d %v", status, body)
	}
	passwordIs(t, app.url, "ada@example.com", "new-password-1", "pa55word1234")
	if !containsLine(app.logs.String(), "level=WARN", "its notice not sent", "request=\"password reset\"", "email=ada@example.com") {
		t.Errorf("no warning for the notice not sent:\n%s", app.logs)
	}
	if n := emailsTo(srv, "ada@example.com", "password was changed"); n != 0 {
		t.Errorf("%d password-changed emails past the budget", n)
	}
}

// TestAddressChangeLinksAndItsEnd: a half confirmed can still cancel the
// change with its link; once the change is made, a cancel with either link
// says the link no longer works (never "cancelled"), and a reset link sent
// to the old address before the change no longer sets the password.
func TestAddressChangeLinksAndItsEnd(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	ask := func(to string) (old, new string) {
		t.Helper()
		n := emailsTo(srv, "ada@example.com", "Confirm the new email address")
		if status, _ := bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": to, "current_password": "pa55word1234"}); status != http.StatusAccepted {
			t.Fatalf("address change to %s: %d", to, status)
		}
		waitFor(t, 10*time.Second, "the confirmation links", func() bool {
			return emailsTo(srv, "ada@example.com", "Confirm the new email address") == n+1 && emailsTo(srv, to, "Confirm the new email address") == 1
		})
		for _, m := range srv.messages() {
			if strings.Contains(subjectOf(m.data), "Confirm the new email address") {
				_, tok := linkOf(t, m.data)
				if m.to == to {
					new = tok
				} else {
					old = tok
				}
			}
		}
		return old, new
	}
	cancel := func(tok string) int {
		status, _ := form(t, app.url, "/confirm-email", url.Values{"token": {tok}, "action": {"cancel"}})
		return status
	}
	old, new := ask("ada@first.example")
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": old}); status != http.StatusOK {
		t.Fatalf("confirm the old half: %d", status)
	}
	if status := cancel(old); status != http.StatusOK {
		t.Errorf("cancel with the link of a half confirmed: %d, want 200", status)
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": new}); status != http.StatusUnprocessableEntity {
		t.Errorf("the other half after the cancel: %d, want 422", status)
	}

	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	old, new = ask("ada@second.example")
	for _, tok := range []string{old, new} {
		if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": tok}); status != http.StatusOK {
			t.Fatalf("confirm: %d", status)
		}
	}
	for _, tok := range []string{old, new} {
		if status := cancel(tok); status != http.StatusUnprocessableEntity {
			t.Errorf("cancel after the change was made: %d, want 422 (the link no longer works)", status)
		}
	}
	if status, _ := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": reset, "password": "stolen-password-1"}); status != http.StatusUnprocessableEntity {
		t.Errorf("the old address's reset link after the change: %d, want 422", status)
	}
}

// TestNoDeadEndsAfterAnAddressChange: every page an address change's links
// lead to — a half confirmed, the change made, cancelled, a used link —
// leads on to the account.
func TestNoDeadEndsAfterAnAddressChange(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	if status, _ := bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": "ada@new.example", "current_password": "pa55word1234"}); status != http.StatusAccepted {
		t.Fatalf("address change: %d", status)
	}
	old := confirmLink(t, waitFor1(t, srv, "ada@example.com", "Confirm the new email address"))
	new := confirmLink(t, waitFor1(t, srv, "ada@new.example", "Confirm the new email address"))
	onward := func(what string, status int, body string) {
		t.Helper()
		if !strings.Contains(body, `href="/account"`) {
			t.Errorf("%s (%d): no way on to the account:\n%s", what, status, body)
		}
	}
	status, body := form(t, app.url, "/confirm-email", url.Values{"token": {old}, "action": {"confirm"}})
	onward("a half confirmed", status, body)
	status, body = form(t, app.url, "/confirm-email", url.Values{"token": {new}, "action": {"confirm"}})
	onward("the change made", status, body)
	status, body = form(t, app.url, "/confirm-email", url.Values{"token": {new}, "action": {"confirm"}})
	onward("a used link", status, body)
}

// TestSkippedNoticeIsSaid: where a change stands but its notice to the
// address is left out (the owner's allowance spent: a reset by link, an
// address change both addresses confirmed), the page says so.
func TestSkippedNoticeIsSaid(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	activatedAccount(t, app, srv, "ada@example.com")
	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	for range budgets[allowanceOwner].perHour {
		app.store.write.Exec(`INSERT INTO sends (address_key, sent_at) VALUES ('owner:ada@example.com', $1)`, millis(time.Now()))
	}
	status, body := form(t, app.url, "/reset-password", url.Values{"token": {reset}, "password": {"new-password-1"}})
	if status != http.StatusOK || !strings.Contains(body, "We could not email the address about this change") {
		t.Errorf("a reset whose notice was left out: %d, and the page does not say so:\n%s", status, body)
	}
	status, body = form(t, app.url, "/reset-password", url.Values{"token": {"NOSUCHTOKENAAAAAAAAAAAAAAA"}, "password": {"new-password-1"}})
	if strings.Contains(body, "We could not email") {
		t.Errorf("a dead link's page speaks of a notice: %d", status)
	}
}

// TestEmailChangedGivesAWayOut: the "email changed" email gives the old
// address a way out that works — its link (which GET never uses) gives the
// account back its old address and ends every session of it, whoever holds
// them; a reset from the old address then works. The link works once.
func TestEmailChangedGivesAWayOut(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	token := activatedAccount(t, app, srv, "ada@example.com")
	if status, _ := bearerDo(t, "POST", app.url+"/v1/users/me/email", token, map[string]string{"email": "thief@evil.example", "current_password": "pa55word1234"}); status != http.StatusAccepted {
		t.Fatalf("address change: %d", status)
	}
	for _, to := range []string{"ada@example.com", "thief@evil.example"} {
		if status, _ := post(t, "PUT", app.url+"/v1/users/email", map[string]string{"token": confirmLink(t, waitFor1(t, srv, to, "Confirm the new email address"))}); status != http.StatusOK {
			t.Fatalf("confirm %s: %d", to, status)
		}
	}
	msg := waitFor1(t, srv, "ada@example.com", "has a new email address")
	link, undo := linkOf(t, msg.data)
	if !strings.Contains(link, "/undo-email?token=") {
		t.Fatalf("the email changed email's link: %s", link)
	}
	path := strings.TrimPrefix(link, app.cfg.baseURL)
	for range 2 { // GET never uses it
		if status, body := get(t, app.url, path); status != 200 || !strings.Contains(body, "thief@evil.example") {
			t.Fatalf("GET %s: %d", path, status)
		}
	}
	status, body := form(t, app.url, "/undo-email", url.Values{"token": {undo}})
	if status != http.StatusOK || !strings.Contains(body, "ada@example.com again") {
		t.Fatalf("undo: %d\n%s", status, body)
	}
	if res := withBearer(t, "GET", app.url+"/v1/users/me", token); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session from before the undo: %d, want 401", res.StatusCode)
	}
	reset := tokenOf(t, askReset(t, app, srv, "ada@example.com").data)
	if status, _ := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": reset, "password": "mine-again-1"}); status != http.StatusOK {
		t.Errorf("a reset from the old address after the undo: %d", status)
	}
	passwordIs(t, app.url, "ada@example.com", "mine-again-1", "pa55word1234")
	if status, _ := form(t, app.url, "/undo-email", url.Values{"token": {undo}}); status != http.StatusUnprocessableEntity {
		t.Errorf("the undo link a second time: %d, want 422", status)
	}
}

// TestDownloadMyData, on both engines: "Download my data" (after the
// current password) gives a JSON file with every row about the person —
// compared with the database's own rows, table by table, so that a new
// table with a user_id column cannot be forgotten silently — and nothing
// secret: no hash, no composed message, no token.
func TestDownloadMyData(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			srv := startSMTP(t, nil)
			app := newTestApp(t, srv, func(cfg *config) { cfg.db = newDB(t) })
			bearer := activatedAccount(t, app, srv, "ada@example.com")
			bearerDo(t, "POST", app.url+"/v1/users/me/email", bearer, map[string]string{"email": "ada@new.example", "current_password": "pa55word1234"})
			waitFor1(t, srv, "ada@new.example", "Confirm the new email address")
			v := newVisitor(t, app.url)
			v.logIn("ada@example.com", "pa55word1234")

			if a := v.post("/account/data", url.Values{"current_password": {"wrong-password"}}); a.status != http.StatusUnprocessableEntity || a.header.Get("Content-Disposition") != "" {
				t.Errorf("a wrong password: %d %q, want 422 and no file", a.status, a.header.Get("Content-Disposition"))
			}
			a := v.post("/account/data", url.Values{"current_password": {"pa55word1234"}})
			if a.status != 200 || !strings.Contains(a.header.Get("Content-Disposition"), "attachment") || a.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("download: %d %v", a.status, a.header)
			}
			var export struct {
				Data map[string][]map[string]any `json:"data"`
			}
			if err := json.Unmarshal([]byte(a.body), &export); err != nil {
				t.Fatalf("the file is not JSON: %v\n%s", err, a.body)
			}

			// Every table that names an account, as the database lists it.
			query := `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name = 'user_id'`
			if engine == "postgres" {
				query = `SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'user_id'`
			}
			rows, err := app.store.read.Query(query)
			if err != nil {
				t.Fatal(err)
			}
			tables := []string{"users"}
			for rows.Next() {
				var name string
				rows.Scan(&name)
				tables = append(tables, name)
			}
			rows.Close()
			u, _ := app.store.userByEmail(context.Background(), "ada@example.com")
			for _, table := range tables {
				key := "user_id"
				if table == "users" {
					key = "id"
				}
				var n int
				mustScan(t, app.store.read.QueryRow(`SELECT count(*) FROM `+table+` WHERE `+key+` = $1`, u.ID), &n)
				got, listed := export.Data[table]
				if !listed || len(got) != n {
					t.Errorf("table %s: %d rows about the account, %d in the file (listed %v)", table, n, len(got), listed)
				}
			}
			for _, secret := range []string{`"password_hash"`, `"hash"`, `"message"`, bearer, "$2a$"} {
				if strings.Contains(a.body, secret) {
					t.Errorf("the file holds %s", secret)
				}
			}
			if !strings.Contains(a.body, "ada@new.example") || !strings.Contains(a.body, `"user_agent"`) {
				t.Error("the file lacks the pending change or the sessions")
			}
		})
	}
}
