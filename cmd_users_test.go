package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// runUsers runs `signup users args…` on database db as an operator would,
// with the service's webhook settings in its environment, and returns its
// output (stdout and stderr) and exit code.
func runUsers(t *testing.T, db string, hooks *receiver, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(builtBinary(t), append([]string{"-db", db, "users"}, args...)...)
	cmd.Env = os.Environ()
	if hooks != nil {
		cmd.Env = append(cmd.Env, "SIGNUP_WEBHOOK_URL="+hooks.url, "SIGNUP_WEBHOOK_SECRET="+testSecret)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// mustUsers is runUsers that fails the test unless the command succeeds.
func mustUsers(t *testing.T, db string, hooks *receiver, args ...string) string {
	t.Helper()
	out, code := runUsers(t, db, hooks, args...)
	if code != 0 {
		t.Fatalf("signup users %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestUsersCommandsBesideServer drives `signup users` beside a serving
// instance, on SQLite and on PostgreSQL, and checks after each command what
// the person and a proxy in front of the app see at once.
func TestUsersCommandsBesideServer(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			hooks := startReceiver(t, nil)
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			const site = "http://localhost:8443" // every instance's -base-url: either may compose an email
			args = append(args, "-db", db, "-webhook-url", hooks.url, "-base-url", site)
			p := startBinary(t, args, "SIGNUP_WEBHOOK_SECRET="+testSecret)
			others := []*process{p} // the instances that must refuse a disabled account's sessions
			if engine == "postgres" {
				others = append(others, startBinary(t, args, "SIGNUP_WEBHOOK_SECRET="+testSecret))
			}

			// Ada signs up and activates, by the API; she has a browser
			// session and a bearer token, and a proxy lets both through.
			signup(t, p.url, "ada@example.com")
			if status, body := post(t, "PUT", p.url+"/v1/users/activated", map[string]string{"token": firstToken(t, srv), "password": "pa55word1234"}); status != 200 {
				t.Fatalf("activate: %d %v", status, body)
			}
			browser := newVisitor(t, p.url)
			browser.logIn("ada@example.com", "pa55word1234")
			_, _, bearer := login(t, p.url, "ada@example.com", "pa55word1234")
			for range 2 { // the second check is answered from what the first read
				if got := browser.get("/v1/forward-auth"); got.status != 200 {
					t.Fatalf("forward auth before: %d", got.status)
				}
				if withBearerStatus(t, "GET", p.url+"/v1/forward-auth", bearer) != 200 {
					t.Fatal("forward auth by bearer before")
				}
			}

			// list and show.
			out := mustUsers(t, db, hooks, "list")
			if !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "active") {
				t.Errorf("users list:\n%s", out)
			}
			var listed account
			if err := json.Unmarshal([]byte(mustUsers(t, db, hooks, "list", "-status", "active", "-q", "ADA", "-json")), &listed); err != nil || listed.Email != "ada@example.com" || listed.Status != "active" {
				t.Errorf("users list -status active -q ADA -json: %+v %v", listed, err)
			}
			if out := mustUsers(t, db, hooks, "list", "-status", "disabled"); strings.Contains(out, "ada@") {
				t.Errorf("users list -status disabled lists an active account:\n%s", out)
			}
			out = mustUsers(t, db, hooks, "show", "ada@example.com")
			for _, want := range []string{`status\s+active`, "browser", "api", "login", "activated", "signup"} {
				if !regexp.MustCompile(want).MatchString(out) {
					t.Errorf("users show lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "Go-http-client") || strings.Contains(out, "127.0.0.1") {
				t.Errorf("users show shows a client's user agent or address, which are the person's own:\n%s", out)
			}

			// disable: every session and token ends at once.
			out = mustUsers(t, db, hooks, "disable", "ada@example.com")
			if !strings.Contains(out, "disabled account") {
				t.Errorf("users disable: %s", out)
			}
			if got := browser.get("/v1/forward-auth"); got.status != 401 {
				t.Errorf("forward auth by the browser right after disable: %d, want 401", got.status)
			}
			for i, instance := range others {
				if got := withBearerStatus(t, "GET", instance.url+"/v1/forward-auth", bearer); got != 401 {
					t.Errorf("instance %d: forward auth by bearer right after disable: %d, want 401", i, got)
				}
				if got := withBearerStatus(t, "GET", instance.url+"/v1/users/me", bearer); got != 401 {
					t.Errorf("instance %d: /v1/users/me right after disable: %d, want 401", i, got)
				}
			}
			if got := series(t, scrapeFrom(t, p.url, "127.0.0.1"))["signup_accounts_disabled"]; got != 1 {
				t.Errorf("signup_accounts_disabled: %v, want 1", got)
			}
			if status, body := post(t, "POST", p.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "pa55word1234"}); status != 403 || !strings.Contains(fmt.Sprint(body), "disabled") {
				t.Errorf("the right password of a disabled account: %d %v, want 403 saying it is disabled", status, body)
			}
			if status, body := post(t, "POST", p.url+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "wrong-password"}); status != 401 || strings.Contains(fmt.Sprint(body), "disabled") {
				t.Errorf("a wrong password of a disabled account: %d %v, want 401 as always", status, body)
			}
			if got := newVisitor(t, p.url).post("/login", url.Values{"email": {"ada@example.com"}, "password": {"pa55word1234"}}); got.status != 403 || !strings.Contains(got.body, "disabled") {
				t.Errorf("the login page, right password of a disabled account: %d", got.status)
			}
			hooks.waitEvent(eventDisabled, "ada@example.com")
			if _, code := runUsers(t, db, hooks, "disable", "ada@example.com"); code == 0 {
				t.Error("disabling a disabled account succeeds")
			}
			if !strings.Contains(mustUsers(t, db, hooks, "list", "-status", "disabled"), "ada@example.com") {
				t.Error("users list -status disabled misses the disabled account")
			}

			// enable: she logs in again (her old sessions stay ended).
			mustUsers(t, db, hooks, "enable", "1")
			if got := browser.get("/v1/forward-auth"); got.status != 401 {
				t.Errorf("an old session after enable: %d, want 401", got.status)
			}
			if status, _, _ := login(t, p.url, "ada@example.com", "pa55word1234"); status != 201 {
				t.Errorf("login after enable: %d", status)
			}
			hooks.waitEvent(eventEnabled, "ada@example.com")
			var shown shownUser
			if err := json.Unmarshal([]byte(mustUsers(t, db, hooks, "show", "ada@example.com", "-json")), &shown); err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, e := range shown.Activity {
				kinds = append(kinds, string(e.Kind))
			}
			if got := strings.Join(kinds, " "); !strings.HasPrefix(got, "login enabled login_failed disabled") {
				t.Errorf("users show -json activity, newest first: %s", got)
			}

			// invite: the service composes the invitation with its own base
			// URL; its link lets the holder choose a password.
			out = mustUsers(t, db, hooks, "invite", "bob@example.com", "-name", "Bob")
			if !strings.Contains(out, "invited bob@example.com") {
				t.Errorf("users invite: %s", out)
			}
			invitation := srv.waitMessages(t, 2, 15*time.Second)[1]
			if invitation.to != "bob@example.com" || !strings.Contains(string(invitation.data), "invited you") {
				t.Fatalf("the invitation: to %v\n%s", invitation.to, invitation.data)
			}
			waitFor(t, 10*time.Second, "the invitation in the metrics", func() bool { // counted once its sending is recorded, by the instance that sent it
				sent := 0.0
				for _, instance := range others {
					sent += series(t, scrapeFrom(t, instance.url, "127.0.0.1"))[`signup_outbox_deliveries_total{channel="email",kind="invitation",result="sent"}`]
				}
				return series(t, scrapeFrom(t, p.url, "127.0.0.1"))["signup_invitations_open"] == 1 && sent == 1
			})
			link, token := linkOf(t, invitation.data)
			if !strings.HasPrefix(link, site+"/activate?token=") {
				t.Errorf("the invitation's link %s is not on the service's base URL %s", link, site)
			}
			if status, page := get(t, p.url, "/activate?token="+token); status != 200 || !strings.Contains(page, "You were invited") || !strings.Contains(page, `name="confirm"`) {
				t.Errorf("the invitation's page: %d\n%s", status, page)
			}
			if status, page := form(t, p.url, "/activate", url.Values{"token": {token}, "action": {"activate"}, "password": {"bobs-own-password"}, "confirm": {"bobs-own-password"}}); status != 200 || !strings.Contains(page, "activated") {
				t.Errorf("activating the invitation: %d\n%s", status, page)
			}
			if status, _, _ := login(t, p.url, "bob@example.com", "bobs-own-password"); status != 201 {
				t.Errorf("login with the invitation's chosen password: %d", status)
			}
			hooks.waitEvent(eventInvited, "bob@example.com")
			if _, code := runUsers(t, db, hooks, "invite", "bob@example.com"); code == 0 {
				t.Error("inviting an address with an activated account succeeds")
			}

			// delete: as her own deletion, with its email and webhook.
			mustUsers(t, db, hooks, "delete", "ada@example.com")
			if status, _, _ := login(t, p.url, "ada@example.com", "pa55word1234"); status != 401 {
				t.Errorf("login after delete: %d", status)
			}
			deleted := srv.waitMessages(t, 3, 15*time.Second)[2]
			if deleted.to != "ada@example.com" || !strings.Contains(string(deleted.data), "deleted") {
				t.Errorf("the account-deleted email: to %v\n%s", deleted.to, deleted.data)
			}
			hooks.waitEvent(eventDeleted, "ada@example.com")
			if out, code := runUsers(t, db, hooks, "show", "ada@example.com"); code == 0 || !strings.Contains(out, "no account") {
				t.Errorf("users show of a deleted account: exit %d\n%s", code, out)
			}
		})
	}
}

// TestUsersExportImport moves accounts with their bcrypt hashes from one
// database to another ($2a$, $2b$ and $2y$ alike), and a malformed file
// imports nothing, saying which line.
func TestUsersExportImport(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), 4)
			if err != nil {
				t.Fatal(err)
			}
			hash := string(h) // $2a$
			if !strings.HasPrefix(hash, "$2a$") || !bcryptHash.MatchString(hash) {
				t.Fatalf("bcrypt gave %s", hash)
			}
			var b strings.Builder
			const n = 10_000
			for i := range n {
				h := hash
				switch i % 3 {
				case 1:
					h = "$2b$" + hash[4:]
				case 2:
					h = "$2y$" + hash[4:]
				}
				fmt.Fprintf(&b, `{"email": "person%d@example.com", "name": "Person %d", "password_hash": %q, "activated": true}`+"\n", i, i, h)
			}
			file := filepath.Join(dir, "accounts.jsonl")
			os.WriteFile(file, []byte(b.String()), 0o600)

			// A bad line late in the file: nothing is imported.
			bad := filepath.Join(dir, "bad.jsonl")
			lines := strings.SplitAfter(b.String(), "\n")
			lines[7_321] = `{"email": "x@example.com", "name": "X", "password_hash": "plain-text-password"}` + "\n"
			os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o600)
			db := database(t)
			out, code := runUsers(t, db, nil, "import", bad)
			if code != 2 || !strings.Contains(out, "line 7322") || !strings.Contains(out, "nothing imported") {
				t.Errorf("import of a malformed file: exit %d\n%s", code, out)
			}
			if out := mustUsers(t, db, nil, "list"); strings.Contains(out, "@example.com") {
				t.Errorf("a malformed file imported something:\n%s", out)
			}

			start := time.Now()
			mustUsers(t, db, nil, "import", file)
			t.Logf("%s: imported %d accounts in %v", engine, n, time.Since(start).Round(time.Millisecond))
			// An address already there: nothing imported, the line named.
			os.WriteFile(bad, []byte(`{"email": "new@example.com", "name": "N", "password_hash": "`+hash+`"}`+"\n"+lines[5]), 0o600)
			if out, code := runUsers(t, db, nil, "import", bad); code == 0 || !strings.Contains(out, "line 2") {
				t.Errorf("import of an address already there: exit %d\n%s", code, out)
			}

			// The export carries everything, hashes included (and an
			// account without a password: an invitation's, a passkey's);
			// imported into another database, people log in with their
			// passwords.
			mustUsers(t, db, nil, "invite", "newcomer@example.com")
			exported := mustUsers(t, db, nil, "export")
			if got := strings.Count(exported, "\n"); got != n+1 {
				t.Fatalf("export: %d lines, want %d", got, n+1)
			}
			again := filepath.Join(dir, "again.jsonl")
			os.WriteFile(again, []byte(exported), 0o600)
			other := filepath.Join(dir, "other.db")
			mustUsers(t, other, nil, "import", again)
			srv := startSMTP(t, nil)
			p := startBinary(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), "-db", other)...))
			for _, i := range []int{0, 1, 2} { // $2a$, $2b$, $2y$
				if status, _, _ := login(t, p.url, fmt.Sprintf("person%d@example.com", i), "correct horse"); status != 201 {
					t.Errorf("login with an imported %s hash: %d", []string{"$2a$", "$2b$", "$2y$"}[i], status)
				}
			}
			// Ids are kept: the app behind knows people by them.
			sc := bufio.NewScanner(strings.NewReader(mustUsers(t, other, nil, "export")))
			first := exported[:strings.Index(exported, "\n")]
			if !sc.Scan() || sc.Text() != first {
				t.Errorf("the first account after a move:\n%s\nwant\n%s", sc.Text(), first)
			}
		})
	}
}

// TestUsersCommandErrors: wrong use says what is wrong and exits 2.
func TestUsersCommandErrors(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "signup.db")
	for _, args := range [][]string{{}, {"frobnicate"}, {"show"}, {"list", "-status", "gone"}, {"invite", "not-an-address"}, {"invite", "a@example.com", "-name", "see www.example.com"}} {
		out, code := runUsers(t, db, nil, args...)
		if code != 2 || !strings.Contains(out, "signup") {
			t.Errorf("users %v: exit %d, want 2\n%s", args, code, out)
		}
	}
	if out, code := runUsers(t, db, nil, "disable", "nobody@example.com"); code != 1 || !strings.Contains(out, "no account") {
		t.Errorf("users disable of no account: exit %d\n%s", code, out)
	}
	if out, _ := runUsers(t, db, nil, "invite", "a@example.com", "-name", "see www.example.com"); !strings.Contains(out, "name:") {
		t.Errorf("a bad name is not named:\n%s", out)
	}
}
