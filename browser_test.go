package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// axeVersion is the axe-core that .ci/run fetches with npm.
const axeVersion = "4.11.0"

var axeOnce struct {
	sync.Once
	src string
	err error
}

// axeSource returns axe-core's script: SIGNUP_AXE_JS, else where .ci/run
// puts it. Without it the accessibility checks are skipped (the rest of a
// browser test runs), except under CI, where that fails the test.
func axeSource(t *testing.T) (string, bool) {
	t.Helper()
	axeOnce.Do(func() {
		path := os.Getenv("SIGNUP_AXE_JS")
		if path == "" {
			cache, _ := os.UserCacheDir()
			path = filepath.Join(cache, "signup", "axe-core-"+axeVersion, "axe.min.js")
		}
		b, err := os.ReadFile(path)
		axeOnce.src, axeOnce.err = string(b), err
	})
	if axeOnce.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("axe-core is missing (.ci/run fetches it with npm): %v", axeOnce.err)
		}
		t.Logf("axe-core is not installed, so pages are not checked for accessibility (npm pack axe-core@%s; .ci/run fetches it): %v", axeVersion, axeOnce.err)
		return "", false
	}
	return axeOnce.src, true
}

// checkAxe runs axe-core on the page the browser shows, for WCAG 2.2 A and
// AA and axe's best practices, and fails the test for every violation.
func checkAxe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	src, ok := axeSource(t)
	if !ok {
		return
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](src+"\n;true")); err != nil {
		t.Fatalf("%s: injecting axe-core: %v", what, err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag",
		values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}}).then(r =>
		JSON.stringify(r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.html)}))))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: running axe-core: %v", what, err)
	}
	if out != "[]" {
		t.Errorf("%s: axe-core reports violations: %s", what, out)
	}
}

// captured waits for the email to address whose subject has subject in
// the development capture's directory dir, and returns it.
func captured(t *testing.T, dir, address, subject string) []byte {
	t.Helper()
	var found []byte
	waitFor(t, 10*time.Second, "the captured email to "+address+" about "+subject, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), "To: <"+address+">") && strings.Contains(subjectOf(b), subject) {
				found = b
				return true
			}
		}
		return false
	})
	return found
}

// TestBrowserWholeLife is an account's whole life in a real headless
// Chromium against the real binary: sign up → activate with the password
// (logged in) → continue to the app → log out → log in → change the
// password (the other session ends) → change the address (both links from
// the captured emails) → delete; axe-core checks every page on the way,
// logged in or not.
func TestBrowserWholeLife(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	theApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html lang="en"><title>The app</title><h1>The app</h1></html>`)
	}))
	t.Cleanup(theApp.Close)
	dir := t.TempDir()
	mail := filepath.Join(dir, "mail")
	p := startBinary(t, []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-mail-dir", mail,
		"-limiter-enabled=false", "-app-name", "Example", "-app-url", theApp.URL + "/home"})
	// The pages as the emails' links name them (-base-url is localhost), so
	// that the session cookie goes where the links lead.
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, p.logs)
		}
	}
	heading := func(h1 string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(`//h1[text()="` + h1 + `"]`)
	}
	location := func() string {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}

	// The pages anyone sees, before any account exists.
	for _, path := range []string{"/signup", "/login", "/resend", "/forgot-password", "/no-such-page", "/activate?token=DEAD", "/reset-password?token=DEAD", "/confirm-email?token=DEAD", "/undo-email?token=DEAD"} {
		step("open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(`h1`))
		checkAxe(t, ctx, path)
	}
	// A returning person starts at / and finds the way to log in, and to
	// sign up, by links.
	step("open /, logged out", chromedp.Navigate(base+"/"), heading("Log in"))
	step("on to sign up", chromedp.Click(`//main//a[text()="Sign up"]`), heading("Create your account"))
	step("back to log in, from the header", chromedp.Click(`//header//a[text()="Log in"]`), heading("Log in"))
	step("a signup form with errors", chromedp.Navigate(base+"/signup"), chromedp.WaitVisible(`#name`),
		chromedp.SendKeys(`#email`, "not-an-address"), chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#email-error`))
	checkAxe(t, ctx, "the signup form with errors")

	// Sign up, activate with the password: logged in, on to the app.
	step("sign up", chromedp.Navigate(base+"/signup"), chromedp.WaitVisible(`#name`),
		chromedp.SendKeys(`#name`, "Ada Lovelace"), chromedp.SendKeys(`#email`, "ada@example.com"),
		chromedp.SendKeys(`#password`, "analytical-engine"), chromedp.Click(`button[type=submit]`), heading("Check your inbox"))
	checkAxe(t, ctx, "check your inbox")
	link, _ := linkOf(t, captured(t, mail, "ada@example.com", "Activate"))
	step("open the activation link", chromedp.Navigate(link), chromedp.WaitVisible(`button[value=activate]`))
	checkAxe(t, ctx, "the activation page")
	step("activate", chromedp.SendKeys(`#password`, "analytical-engine"), chromedp.Click(`button[value=activate]`), heading("Your account is activated"))
	checkAxe(t, ctx, "activated")
	step("continue to the app", chromedp.Click(`//a[text()="Continue to Example"]`), heading("The app"))
	if loc := location(); loc != theApp.URL+"/home" {
		t.Errorf("continued to %s, want the app", loc)
	}
	step("the account page", chromedp.Navigate(base+"/account"), heading("Your account"))
	checkAxe(t, ctx, "the account page")
	step("the login page, logged in", chromedp.Navigate(base+"/login"), heading("You are logged in"))
	checkAxe(t, ctx, "the login page, logged in")
	step("back to the account page", chromedp.Navigate(base+"/account"), heading("Your account"))
	// The password manager's hidden username field stays hidden: no box, no keyboard stop.
	if shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll("input[hidden]")].some(e => getComputedStyle(e).display !== "none")`)); err != nil || shown {
		t.Errorf("a hidden field of the account page is shown (%v)", err)
	}

	// Log out, fail to log in, log in: back to the account page asked for.
	step("log out", chromedp.Click(`//button[text()="Log out"]`), heading("Log in"))
	step("the account page, logged out", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`#email`))
	if loc := location(); loc != base+"/login?return_to=%2Faccount" {
		t.Errorf("logged out, /account went to %s", loc)
	}
	step("a wrong password", chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "wrong-password"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`p.error`))
	checkAxe(t, ctx, "a failed login")
	step("log in", chromedp.SendKeys(`#password`, "analytical-engine"), chromedp.Click(`button[type=submit]`), heading("Your account"))
	if loc := location(); loc != base+"/account" {
		t.Errorf("logged in, landed on %s, want the page asked for", loc)
	}

	// Another session, by the API; the password change ends it.
	_, body := post(t, "POST", base+"/v1/tokens/authentication", map[string]string{"email": "ada@example.com", "password": "analytical-engine"})
	other := body["authentication_token"].(map[string]any)["token"].(string)
	step("see both sessions", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`//li[contains(., "An API token")]`))
	step("a wrong current password", chromedp.SendKeys(`#pw-current`, "wrong-password"), chromedp.SendKeys(`#pw-new`, "difference-engine"),
		chromedp.Click(`//button[text()="Change my password"]`), chromedp.WaitVisible(`#pw-current-error`))
	checkAxe(t, ctx, "the account page with an error")
	step("change the password", chromedp.SendKeys(`#pw-current`, "analytical-engine"), chromedp.SendKeys(`#pw-new`, "difference-engine"),
		chromedp.Click(`//button[text()="Change my password"]`), heading("Your password is changed"))
	checkAxe(t, ctx, "password changed")
	if status, _ := bearerDo(t, "GET", base+"/v1/users/me", other, nil); status != 401 {
		t.Errorf("the other session after the password change: %d, want 401", status)
	}
	captured(t, mail, "ada@example.com", "password was changed")

	// Change the address: a link to each; the change when both confirm.
	step("ask to change the address", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`#em-new`),
		chromedp.SendKeys(`#em-new`, "ada@lovelace.example"), chromedp.SendKeys(`#em-current`, "difference-engine"),
		chromedp.Click(`//button[text()="Change my email address"]`), heading("Check both inboxes"))
	for i, address := range []string{"ada@lovelace.example", "ada@example.com"} {
		link, _ := linkOf(t, captured(t, mail, address, "Confirm the new email address"))
		step("open the link to "+address, chromedp.Navigate(link), chromedp.WaitVisible(`button[value=confirm]`))
		checkAxe(t, ctx, "the confirmation page")
		want := "Confirmed from this address"
		if i == 1 {
			want = "Your email address is changed"
		}
		step("confirm from "+address, chromedp.Click(`button[value=confirm]`), heading(want))
	}
	step("the account's new address", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`//dd[text()="ada@lovelace.example"]`))

	// Delete the account.
	step("delete the account", chromedp.SendKeys(`#del-current`, "difference-engine"),
		chromedp.Click(`//button[text()="Delete my account"]`), heading("Your account is deleted"))
	checkAxe(t, ctx, "deleted")
	captured(t, mail, "ada@lovelace.example", "account was deleted")
	if status, _ := post(t, "POST", base+"/v1/tokens/authentication", map[string]string{"email": "ada@lovelace.example", "password": "difference-engine"}); status != 401 {
		t.Errorf("log in to the deleted account: %d", status)
	}
}

// TestFailedFormInViewOnAPhone: on a phone, a form low on /account that
// fails lands the page on the field at fault, focused, its error in view
// and announced; axe finds nothing on that state.
func TestFailedFormInViewOnAPhone(t *testing.T) {
	t.Parallel()
	ctx := browser(t) // a phone's window
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1) // where the session cookie goes
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#del-current`),
		chromedp.SendKeys(`#del-current`, "not-my-password"), chromedp.Click(`button.danger`),
		chromedp.WaitVisible(`#del-current-error`),
	); err != nil {
		t.Fatalf("the failed deletion: %v\n%s", err, p.logs)
	}
	// The browser focuses the autofocus field once the page is ready (after
	// its deferred script): wait for it, as a person's eyes would.
	waitFor(t, 10*time.Second, "the failed form's error in view with its field focused", func() bool {
		inView, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
			const r = document.querySelector("#del-current-error").getBoundingClientRect();
			return r.top >= 0 && r.bottom <= window.innerHeight && document.activeElement.id === "del-current";
		})()`))
		return err == nil && inView
	})
	checkAxe(t, ctx, "a failed form low on the account page")
}

// checkedSteps returns step: it runs a page state's actions in the browser
// of ctx, failing the test with p's logs if one fails, then has axe check
// the state reached.
func checkedSteps(t *testing.T, ctx context.Context, p *process) func(what string, actions ...chromedp.Action[chromedp.Void]) {
	return func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, p.logs)
		}
		checkAxe(t, ctx, what)
	}
}

// TestBrowserOperatorPages: the page states the operator's side adds —
// signup by invitation for one domain, an invitation's activation, the
// account's recent activity, a disabled account's login, signup closed —
// work in Chromium, and axe finds nothing on them.
func TestBrowserOperatorPages(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	db := filepath.Join(dir, "signup.db")
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	p := startBinary(t, append(args, "-db", db, "-signup", "invite", "-signup-domains", "example.com"))
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1) // where the session cookie goes
	step := checkedSteps(t, ctx, p)
	step("the signup page, by invitation for one domain", chromedp.Navigate(base+"/signup"),
		chromedp.WaitVisible(`//p[contains(., "by invitation")]`))
	step("a signup for another domain", chromedp.SendKeys(`#name`, "Ada"), chromedp.SendKeys(`#email`, "ada@other.example"),
		chromedp.SendKeys(`#password`, "pa55word1234"), chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#email-error`))

	mustUsers(t, db, nil, "invite", "ada@example.com", "-name", "Ada")
	link, _ := linkOf(t, waitFor1(t, srv, "ada@example.com", "invited").data)
	step("an invitation's page", chromedp.Navigate(link), // on localhost, as base
		chromedp.WaitVisible(`#confirm`))
	step("activated by the invitation", chromedp.SendKeys(`#password`, "analytical-engine"), chromedp.SendKeys(`#confirm`, "analytical-engine"),
		chromedp.Click(`button[value=activate]`), chromedp.WaitVisible(`//h1[text()="Your account is activated"]`))
	step("the account's recent activity", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`#activity-heading`),
		chromedp.WaitVisible(`//li[contains(., "Invited by the operator")]`))

	mustUsers(t, db, nil, "disable", "ada@example.com")
	step("the login of a disabled account", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "analytical-engine"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`//p[contains(., "has been disabled")]`))

	closed := startBinary(t, append(baseArgs(t.TempDir()), "-signup", "closed"))
	step("signup closed", chromedp.Navigate(strings.Replace(closed.url, "127.0.0.1", "localhost", 1)+"/signup"),
		chromedp.WaitVisible(`//h1[text()="Signing up is closed"]`))
}

// TestBrowserTwoStep: turning two-step verification on in Chromium (the
// QR code is an image of this site, allowed by the Content-Security-
// Policy), its recovery codes, then a login with a code from oathtool; axe
// finds nothing on each new page state.
func TestBrowserTwoStep(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1)
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))
	step := checkedSteps(t, ctx, p)
	step("the account page, two-step off", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#tss-current`))
	step("the setup page", chromedp.SendKeys(`#tss-current`, "pa55word1234"), chromedp.Click(`//button[text()="Turn on two-step verification"]`),
		chromedp.WaitVisible(`img[src="/account/two-step/qr.png"]`))
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("img").complete && document.querySelector("img").naturalWidth === 240`))
	if err != nil || !loaded {
		t.Errorf("the QR code did not load in the browser (%v)", err)
	}
	secret, err := chromedp.Run(ctx, chromedp.Text(`code`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	step("the recovery codes", chromedp.SendKeys(`#code`, oathCode(t, secret, now)), chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`//h1[text()="Your recovery codes"]`))
	step("the account page, two-step on", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(`#tso-code`))
	step("the login's second step", chromedp.Click(`//button[text()="Log out"]`), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#code`))
	step("a wrong code", chromedp.SendKeys(`#code`, "000000"), chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#code-error`))
	step("logged in with a code", chromedp.SendKeys(`#code`, oathCode(t, secret, now.Add(30*time.Second))), chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`//h1[text()="Your account"]`))
}

// addAuthenticator gives the browser of ctx a virtual platform
// authenticator (DevTools' WebAuthn domain) that keeps discoverable
// credentials and verifies its user, as a phone or a laptop does.
func addAuthenticator(t *testing.T, ctx context.Context) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Action[cdpwebauthn.AuthenticatorID](func(ctx context.Context, target *chromedp.Target) (cdpwebauthn.AuthenticatorID, error) {
		if _, err := cdp.Call(ctx, target, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
			return "", err
		}
		// The button's path, not the autofill's: a virtual authenticator
		// may answer the autofill's pending request at once, and race
		// the test's own steps.
		if _, err := cdp.Call(ctx, target, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);`}); err != nil {
			return "", err
		}
		res, err := cdp.Call(ctx, target, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: &cdpwebauthn.VirtualAuthenticatorOptions{
			Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Transport: cdpwebauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}})
		return res.AuthenticatorID, err
	}))
	if err != nil {
		t.Fatalf("a virtual authenticator: %v", err)
	}
}

// TestBrowserPasskeys: in Chromium with a virtual authenticator, a person
// adds a passkey on the account page (after the password), logs out and
// logs in with it by the button, no address typed; a disabled account's
// passkey and a removed passkey log no one in; axe finds nothing on the
// new page states. The site is http://localhost: an IP address is no
// relying-party ID.
func TestBrowserPasskeys(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	addAuthenticator(t, ctx)
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	db := filepath.Join(dir, "signup.db")
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-db", db)...))
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1)
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))
	step := checkedSteps(t, ctx, p)
	heading := func(h1 string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(`//h1[text()="` + h1 + `"]`)
	}
	logInWithPasskey := chromedp.Steps(chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`#passkey-login`), chromedp.Click(`#passkey-login`))

	step("the account page with no passkey", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#passkey-add`))
	step("a passkey added", chromedp.SetValue(`#pka-name`, "Laptop"), chromedp.SendKeys(`#pka-current`, "pa55word1234"),
		chromedp.Click(`//button[text()="Add a passkey"]`), chromedp.WaitVisible(`//li[starts-with(., "Laptop, added")]`))
	waitFor1(t, srv, "ada@example.com", "A passkey was added")

	step("logged in with the passkey", chromedp.Click(`//button[text()="Log out"]`), heading("Log in"),
		logInWithPasskey, heading("Your account"), chromedp.WaitVisible(`//li[contains(., "last used")]`))

	mustUsers(t, db, nil, "disable", "ada@example.com") // its session ends too
	step("a disabled account's passkey", logInWithPasskey, chromedp.WaitVisible(`//p[@id="passkey-status"][contains(., "does not log in")]`))
	mustUsers(t, db, nil, "enable", "ada@example.com")

	step("the passkey removed", logInWithPasskey, heading("Your account"), chromedp.WaitVisible(`#pkr-current`),
		chromedp.SendKeys(`#pkr-current`, "pa55word1234"), chromedp.Click(`//button[text()="Remove this passkey"]`),
		chromedp.WaitVisible(`//p[contains(., "The passkey is removed")]`))
	waitFor1(t, srv, "ada@example.com", "A passkey was removed")
	step("a removed passkey", chromedp.Click(`//button[text()="Log out"]`), heading("Log in"),
		logInWithPasskey, chromedp.WaitVisible(`//p[@id="passkey-status"][contains(., "does not log in")]`))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, base+"/login") {
		t.Errorf("a removed passkey led to %s", loc)
	}
}

// TestBrowserPasskeySignup: in Chromium with a virtual authenticator, a
// person signs up with a passkey and no password, activates by the
// welcome email's link with that passkey and is logged in; confirms a
// change with it and sets a password, which then logs in. axe finds
// nothing on the new page states.
func TestBrowserPasskeySignup(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	addAuthenticator(t, ctx)
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...))
	base := strings.Replace(p.url, "127.0.0.1", "localhost", 1)
	step := checkedSteps(t, ctx, p)
	heading := func(h1 string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(`//h1[text()="` + h1 + `"]`)
	}
	button := func(text string) string { return `//button[text()="` + text + `"]` }

	step("the signup page offers a passkey", chromedp.Navigate(base+"/signup"), chromedp.WaitVisible(button("Sign up with a passkey")))
	step("signed up with a passkey", chromedp.SendKeys(`#name`, "Ada"), chromedp.SendKeys(`#email`, "ada@example.com"),
		chromedp.Click(button("Sign up with a passkey")), heading("Check your inbox"))
	token := tokenOf(t, waitFor1(t, srv, "ada@example.com", "Activate").data)
	step("the activation page asks for the passkey", chromedp.Navigate(base+"/activate?token="+token),
		chromedp.WaitVisible(button("Activate with my passkey")), chromedp.WaitVisible(button("Activate with a new passkey")))
	step("activated with the passkey", chromedp.Click(button("Activate with my passkey")), heading("Your account"),
		chromedp.WaitVisible(`//h2[text()="Set a password"]`))
	step("confirmed with the passkey", chromedp.Click(button("Confirm with a passkey")),
		chromedp.WaitVisible(`//p[contains(., "Confirmed with your passkey")]`))
	step("a password set", chromedp.SendKeys(`#pw-new`, "ada-pass-1234"), chromedp.Click(button("Change my password")),
		heading("Your password is changed"))
	if status, _, _ := login(t, p.url, "ada@example.com", "ada-pass-1234"); status != 201 {
		t.Errorf("the password set after a passkey signup: login %d, want 201", status)
	}
}

// TestBrowserOIDC: in Chromium, through oauth2-proxy in front of an app
// registered with -consent: the page asked for → signup's login page →
// "Allow this app?" → back on the page asked for, as the person; the
// forms may continue to the app's origin (form-action); axe finds nothing
// on the login and consent pages. The account page lists the app.
func TestBrowserOIDC(t *testing.T) {
	t.Parallel()
	s := startOAuth2Proxy(t, "-consent")
	ctx := browser(t)
	step := checkedSteps(t, ctx, s.signup)
	step("the app sends to signup's login", chromedp.Navigate(s.proxy+"/reports"), chromedp.WaitVisible(`#email`))
	step("the consent page", chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`//h1[text()="Allow this app?"]`))
	if err := chromedp.Do(ctx, chromedp.Click(`//button[text()="Allow"]`), chromedp.WaitVisible(`//h1[text()="The app"]`)); err != nil {
		t.Fatalf("allowed: %v\n%s", err, s.signup.logs)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	email, _ := chromedp.Run(ctx, chromedp.Text(`#email`))
	if loc != s.proxy+"/reports" || email != "ada@example.com" {
		t.Errorf("landed on %s as %q, want %s/reports as ada@example.com", loc, email, s.proxy)
	}
	step("the account page lists the app", chromedp.Navigate(s.site+"/account"), chromedp.WaitVisible(`//li[starts-with(., "The app, allowed")]`))
	step("an app's logout that names no one asks first", chromedp.Navigate(s.site+"/end_session"), chromedp.WaitVisible(`//h1[text()="Log out?"]`))
	step("logged out", chromedp.Click(`//button[text()="Log out"]`), chromedp.WaitVisible(`#email`))
	step("and so", chromedp.Navigate(s.site+"/account"), chromedp.WaitVisible(`#email`))
}

// spaPage is a single-page app (a public client) of the signup at site:
// at / it sends the browser to /authorize with PKCE; at /callback it
// exchanges the code at the token endpoint and asks userinfo, both with
// fetch from its own origin, and shows the address (#email) or what went
// wrong (#error).
const spaPage = `<!doctype html><html lang="en"><title>The app</title><h1>The app</h1><p id="out"></p><script>
const site = %q, client = %q, redirect = location.origin + "/callback";
const b64 = bytes => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const show = (id, text) => { const p = document.getElementById("out"); p.id = id; p.textContent = text; };
(async () => {
	if (location.pathname === "/") {
		const verifier = b64(crypto.getRandomValues(new Uint8Array(32)));
		sessionStorage.setItem("verifier", verifier);
		const challenge = b64(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
		location = site + "/authorize?" + new URLSearchParams({client_id: client, redirect_uri: redirect, response_type: "code",
			scope: "openid email", state: "s", code_challenge: challenge, code_challenge_method: "S256"});
		return;
	}
	const code = new URLSearchParams(location.search).get("code");
	const token = await fetch(site + "/oauth/token", {method: "POST", body: new URLSearchParams({grant_type: "authorization_code",
		code, redirect_uri: redirect, client_id: client, code_verifier: sessionStorage.getItem("verifier")})});
	if (!token.ok) { show("error", "token endpoint: " + token.status); return; }
	const info = await fetch(site + "/userinfo", {headers: {Authorization: "Bearer " + (await token.json()).access_token}});
	if (!info.ok) { show("error", "userinfo: " + info.status); return; }
	show("email", (await info.json()).email);
})().catch(e => show("error", String(e)));
</script></html>`

// TestBrowserSinglePageApp: a single-page app on another site (a public
// client, registered with its redirect URI) signs a person in through
// signup in Chromium: the login, then its own fetches of the token
// endpoint and userinfo, which the browser lets through (CORS) and signup
// takes from the app's registered origin — while a cross-origin post from
// an origin no app registered is refused, and no origin's request to the
// provider is answered as one that may carry a cookie.
func TestBrowserSinglePageApp(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	dir := t.TempDir()
	port := freePort(t)
	site := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := startBinary(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-port", fmt.Sprint(port), "-base-url", site)...))
	signup(t, p.url, "ada@example.com")
	activate(t, p.url, waitFor1(t, srv, "ada@example.com", "Activate"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spa := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port) // another site than 127.0.0.1's
	client := addClient(t, filepath.Join(dir, "signup.db"), "The app", "-public", "-redirect-uri", spa+"/callback")
	app := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, spaPage, site, client.ID)
	})}}
	app.Start()
	t.Cleanup(app.Close)

	ctx := browser(t)
	step := checkedSteps(t, ctx, p)
	step("the app sends to signup's login", chromedp.Navigate(spa+"/"), chromedp.WaitVisible(`#email`))
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#email`, "ada@example.com"), chromedp.SendKeys(`#password`, "pa55word1234"),
		chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`//h1[text()="The app"]`), chromedp.WaitVisible(`#email, #error`)); err != nil {
		t.Fatalf("back at the app: %v\n%s", err, p.logs)
	}
	email, _ := chromedp.Run(ctx, chromedp.Text(`#email, #error`))
	if email != "ada@example.com" {
		t.Errorf("the app shows %q, want the address userinfo gave it", email)
	}

	// The same post from an origin no app registered: refused.
	req, _ := http.NewRequest("POST", p.url+"/oauth/token", strings.NewReader("grant_type=authorization_code&code=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin post to the token endpoint from an unregistered origin: %d, want 403", res.StatusCode)
	}
	// Any origin may read the provider's routes, never with a cookie.
	for _, path := range []string{"/.well-known/openid-configuration", "/authorize"} {
		req, _ = http.NewRequest("GET", p.url+path, nil)
		req.Header.Set("Origin", "http://evil.example")
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("Access-Control-Allow-Credentials") != "" || res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s from another origin: CORS headers %v", path, res.Header)
		}
	}
}
