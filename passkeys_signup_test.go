package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// finish posts a passkey ceremony's second half, as passkeys.js does.
func (v *visitor) finish(path string, in passkeyFinish) pageAnswer {
	v.t.Helper()
	raw, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", v.base+path, strings.NewReader(string(raw)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return v.do(req)
}

// begun is a ceremony's first half answered: its token, its challenge and,
// for a new passkey, the user handle to make it with.
type begun struct {
	ceremony          string
	challenge, handle []byte
	allowed           int // for an existing passkey: how many are allowed
}

// begin posts form values to path (a ceremony's first half, as passkeys.js
// posts the page's form) and reads its answer; it fails the test unless
// it is answered 200.
func (v *visitor) begin(path string, values url.Values) begun {
	v.t.Helper()
	a := v.post(path, values)
	var out struct {
		Ceremony string `json:"ceremony"`
		Options  struct {
			PublicKey struct {
				Challenge string              `json:"challenge"`
				User      struct{ ID string } `json:"user"`
				Allow     []any               `json:"allowCredentials"`
			} `json:"publicKey"`
		} `json:"options"`
	}
	if err := json.Unmarshal([]byte(a.body), &out); a.status != 200 || err != nil {
		v.t.Fatalf("begin %s: %d %s", path, a.status, a.body)
	}
	pk := out.Options.PublicKey
	challenge, _ := base64.RawURLEncoding.DecodeString(pk.Challenge)
	handle, _ := base64.RawURLEncoding.DecodeString(pk.User.ID)
	return begun{out.Ceremony, challenge, handle, len(pk.Allow)}
}

// signUpWithPasskey signs up name and address at v with a new passkey of a,
// as the signup page's button does, and returns the answer.
func signUpWithPasskey(t *testing.T, v *visitor, a *softAuthenticator, site, name, address string) pageAnswer {
	t.Helper()
	b := v.begin("/signup/passkey", url.Values{"name": {name}, "email": {address}})
	return v.finish("/signup/passkey/finish", passkeyFinish{Ceremony: b.ceremony, Credential: a.create(t, b.challenge, b.handle, site)})
}

// passkeyLogin logs in at base with a's passkey, by the login page's
// button, and returns the status.
func passkeyLogin(t *testing.T, base string, a *softAuthenticator, site string) int {
	t.Helper()
	v := newVisitor(t, base)
	b := v.begin("/login/passkey", nil)
	return v.finish("/login/passkey/finish", passkeyFinish{Ceremony: b.ceremony, Credential: a.assert(t, b.challenge, site)}).status
}

// TestPasskeySignup: on both engines (two instances sharing PostgreSQL),
// a person signs up with a passkey and no password; the signup answers
// alike for an address that has an account (whose owner is told, and
// whose account gets no passkey); the welcome link's page asks for that
// passkey, which activates and logs in at the other instance; a password
// logs no one in until the person sets one, after confirming with the
// passkey (once: the next change needs it again), or resets by email into
// one; the last passkey of an account without a password stays. Whoever
// holds the link ends with the credential they hold: a stranger's passkey
// signup for someone else's address logs no one in once the address's
// owner chose a password, or a passkey of their own, or signed up again
// with a password.
func TestPasskeySignup(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			const site = "http://localhost:8443" // both instances' -base-url: the relying party
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			args = append(args, "-db", db, "-base-url", site)
			a, b := startInstances(t, engine, args)

			ada := newSoftAuthenticator(t, 0)
			signedUp := signUpWithPasskey(t, newVisitor(t, a.url), ada, site, "Ada", "ada@example.com")
			if signedUp.status != 200 || !strings.Contains(signedUp.body, `"next": "/signup/sent?email=ada%40example.com"`) {
				t.Fatalf("a passkey signup: %d %s", signedUp.status, signedUp.body)
			}
			signup(t, a.url, "bob@example.com")
			activate(t, a.url, waitFor1(t, srv, "bob@example.com", "Activate"))
			mallory := newSoftAuthenticator(t, 0)
			if got := signUpWithPasskey(t, newVisitor(t, a.url), mallory, site, "Bob", "bob@example.com"); got.status != 200 ||
				got.body != strings.ReplaceAll(signedUp.body, "ada", "bob") {
				t.Errorf("a passkey signup for an address with an account: %d %s, want the answer of any signup", got.status, got.body)
			}
			waitFor1(t, srv, "bob@example.com", "tried to sign up")
			if status := passkeyLogin(t, b.url, mallory, site); status != 401 {
				t.Errorf("the passkey of a signup for an account's address: %d, want 401", status)
			}

			token := tokenOf(t, waitFor1(t, srv, "ada@example.com", "Activate").data)
			v := newVisitor(t, b.url)
			if page := v.get("/activate?token=" + token); page.status != 200 || !strings.Contains(page.body, `data-begin="/activate/passkey"`) ||
				!strings.Contains(page.body, `name="confirm"`) {
				t.Errorf("the activation page of a passkey signup: %d, want its passkey offered and a password to choose:\n%s", page.status, page.body)
			}
			if status := passkeyLogin(t, a.url, ada, site); status != 401 {
				t.Errorf("the passkey of a signup not activated yet: %d, want 401", status)
			}
			begun := v.begin("/activate/passkey", url.Values{"token": {token}})
			if begun.allowed != 1 {
				t.Errorf("activating asks for %d passkeys, want the signup's one", begun.allowed)
			}
			if got := v.finish("/activate/passkey/finish", passkeyFinish{Ceremony: begun.ceremony, Token: token,
				Credential: ada.assert(t, begun.challenge, site)}); got.status != 200 || v.cookie("signup_session") == "" {
				t.Fatalf("activated with the signup's passkey: %d %s", got.status, got.body)
			}
			if page := v.get("/account"); page.status != 200 || !strings.Contains(page.body, "Set a password") {
				t.Errorf("the account page of a passkey's account: %d, want it to offer setting a password", page.status)
			}
			if status := passkeyLogin(t, a.url, ada, site); status != 200 {
				t.Errorf("the activated passkey at the other instance: %d, want 200", status)
			}
			if status, _, _ := login(t, a.url, "ada@example.com", ""); status == 201 {
				t.Errorf("an account without a password logged in with an empty one")
			}

			// Re-authentication by the passkey: once per confirmation.
			prove := func() {
				t.Helper()
				b := v.begin("/account/passkeys/proof", nil)
				if got := v.finish("/account/passkeys/proof/finish", passkeyFinish{Ceremony: b.ceremony, Credential: ada.assert(t, b.challenge, site)}); got.status != 200 {
					t.Fatalf("confirmed with the passkey: %d %s", got.status, got.body)
				}
			}
			if got := v.post("/account/password", url.Values{"password": {"ada-pass-1234"}}); got.status != 422 {
				t.Errorf("a password set without the passkey's confirmation: %d, want 422", got.status)
			}
			prove()
			if got := v.post("/account/passkeys/remove", url.Values{"id": {hex.EncodeToString(ada.id)}}); got.status != 422 ||
				!strings.Contains(got.body, "only way into your account") {
				t.Errorf("the last passkey of an account without a password removed: %d", got.status)
			}
			prove()
			if page := v.get("/account"); !strings.Contains(page.body, "Confirmed with your passkey") || strings.Contains(page.body, `id="pw-current"`) {
				t.Errorf("the account page after the passkey's confirmation does not say so")
			}
			if got := v.post("/account/password", url.Values{"password": {"ada-pass-1234"}}); got.status != 200 {
				t.Fatalf("a password set after the passkey's confirmation: %d %s", got.status, got.body)
			}
			waitFor1(t, srv, "ada@example.com", "password was changed")
			if status, _, _ := login(t, b.url, "ada@example.com", "ada-pass-1234"); status != 201 {
				t.Errorf("the password set: login %d, want 201", status)
			}
			if got := v.post("/account/email", url.Values{"email": {"ada2@example.com"}}); got.status != 422 {
				t.Errorf("a second change on one confirmation: %d, want 422", got.status)
			}

			// Whoever holds the link ends with the credential they hold.
			for _, c := range []struct{ address, how string }{{"eve@example.com", "password"}, {"fay@example.com", "new passkey"}, {"gus@example.com", "password signup"}} {
				mallory := newSoftAuthenticator(t, 0)
				signUpWithPasskey(t, newVisitor(t, a.url), mallory, site, "Mallory", c.address)
				owner := newSoftAuthenticator(t, 0)
				msg := waitFor1(t, srv, c.address, "Activate")
				switch c.how {
				case "password":
					status, body := form(t, b.url, "/activate", url.Values{"token": {tokenOf(t, msg.data)}, "action": {"activate"},
						"password": {"owner-pass-1234"}, "confirm": {"owner-pass-1234"}})
					if status != 200 || !strings.Contains(body, "activated") {
						t.Fatalf("%s activated with a password of their own: %d", c.address, status)
					}
				case "new passkey":
					token := tokenOf(t, msg.data)
					w := newVisitor(t, b.url)
					begun := w.begin("/activate/passkey/new", url.Values{"token": {token}})
					if got := w.finish("/activate/passkey/new/finish", passkeyFinish{Ceremony: begun.ceremony, Token: token,
						Credential: owner.create(t, begun.challenge, begun.handle, site)}); got.status != 200 {
						t.Fatalf("%s activated with a passkey of their own: %d %s", c.address, got.status, got.body)
					}
					if status := passkeyLogin(t, a.url, owner, site); status != 200 {
						t.Errorf("%s's own passkey: %d, want 200", c.address, status)
					}
				case "password signup":
					signup(t, b.url, c.address)
					waitFor(t, 10*time.Second, "the second welcome", func() bool { return emailsTo(srv, c.address, "Activate") == 2 })
					var last received
					for _, m := range srv.messages() {
						if m.to == c.address {
							last = m
						}
					}
					activate(t, b.url, last)
				}
				if status := passkeyLogin(t, a.url, mallory, site); status != 401 {
					t.Errorf("%s: the stranger's passkey after the owner's %s: %d, want 401", c.address, c.how, status)
				}
			}

			// A passkey's account resets by email into a password.
			fay := "fay@example.com"
			if status, _ := post(t, "POST", a.url+"/v1/tokens/password-reset", map[string]string{"email": fay}); status != 202 {
				t.Fatalf("a reset for a passkey's account: %d", status)
			}
			reset := tokenOf(t, waitFor1(t, srv, fay, "Reset").data)
			if status, body := post(t, "PUT", a.url+"/v1/users/password", map[string]string{"token": reset, "password": "fay-pass-1234"}); status != 200 {
				t.Fatalf("reset into a password: %d %v", status, body)
			}
			if status, _, _ := login(t, b.url, fay, "fay-pass-1234"); status != 201 {
				t.Errorf("the password a passkey's account reset into: login %d, want 201", status)
			}
		})
	}
}
