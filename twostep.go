package main

// twostep.go is two-step verification (TOTP, RFC 6238) for a person:
// turning it on from the account page (a QR code served here and the
// secret as text, confirmed by a first code; ten recovery codes shown
// once), turning it off and making new recovery codes; the second step of
// a login, on the login page and by the API (a challenge exchanged for the
// session); and the code a sensitive change asks for (checkSecondStep).
// store_twostep.go keeps it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// The second step's errors: no code given where one is needed; a code
// that is not good (wrong, used already, or a recovery code spent); a
// challenge unknown or expired.
var (
	errCodeNeeded   = errors.New("two-step verification is on: a code is needed")
	errWrongCode    = errors.New("invalid or used code")
	errBadChallenge = errors.New("invalid or expired challenge")
)

// challengeTTL is how long the second step of a login may wait.
const challengeTTL = 5 * time.Minute

// recoveryCodeCount is how many recovery codes an account holds.
const recoveryCodeCount = 10

// secondStep answers a login whose password was right on an account with
// two-step verification: the challenge that a code exchanges for the
// session, and until when.
type secondStep struct {
	challenge string
	expiry    time.Time
}

func (secondStep) Error() string { return "a second step is needed" }

// challenge starts the second step of u's login: the password was right,
// and the challenge waits for a code. The attempt stays counted by the
// throttle until a good code clears it (takeCode): whoever has the
// password cannot try codes without end by typing it again.
func (app *application) challenge(ctx context.Context, u *user) error {
	token, hash := newToken()
	expiry := app.now().Add(challengeTTL)
	if err := app.store.newChallenge(ctx, u.ID, hash, expiry); err != nil {
		return err
	}
	return secondStep{token, expiry}
}

// takeCode takes code as u's second step, throttled as a password is: a
// wrong code counts as a failed login from client.
func (app *application) takeCode(ctx context.Context, u *user, code, client string, device bool) error {
	_, retry, err := app.store.beginLogin(ctx, u.Email, client, device, app.now())
	if errors.Is(err, errThrottled) {
		app.logger.Warn("two-step code throttled", "user_id", u.ID, "retry_after", retry.Round(time.Second).String())
		return throttled{retry}
	}
	if err != nil {
		return err
	}
	code = strings.TrimSpace(code)
	ok, err := app.store.useCode(ctx, u, code, app.now())
	if err != nil {
		return err
	}
	if !ok {
		return errWrongCode
	}
	app.outbox.kick() // a recovery code's notice
	return app.store.passwordChecked(ctx, u.Email, client)
}

// checkSecondStep checks code where u has two-step verification on, for a
// sensitive change whose password was right.
func (app *application) checkSecondStep(r *http.Request, u *user, code, client string, device bool) error {
	s, err := app.store.twoStep(r.Context(), u.ID)
	if err != nil || !s.On {
		return err
	}
	if strings.TrimSpace(code) == "" {
		return errCodeNeeded
	}
	return app.takeCode(r.Context(), u, code, client, device)
}

// completeLogin exchanges challenge and code for a session of scope, as a
// login with the password alone makes it (login): its token and expiry.
func (app *application) completeLogin(w http.ResponseWriter, r *http.Request, challenge, code, scope string) (string, time.Time, error) {
	now := app.now()
	hash := hashToken(challenge)
	u, err := app.store.challengeUser(r.Context(), hash, now)
	if errors.Is(err, errNotFound) {
		return "", time.Time{}, errBadChallenge
	}
	if err != nil {
		return "", time.Time{}, err
	}
	client, device, err := app.loginClient(r, u.Email)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := app.takeCode(r.Context(), u, code, client, device); err != nil {
		if errors.Is(err, errWrongCode) {
			app.metrics.logins.WithLabelValues("code_failed").Inc()
		}
		return "", time.Time{}, err
	}
	token, expiry, err := app.finishLogin(w, r, u, client, device, scope, "pwd otp mfa", now)
	if err != nil {
		return "", time.Time{}, err
	}
	app.metrics.logins.WithLabelValues("ok").Inc()
	return token, expiry, app.store.endChallenge(r.Context(), hash)
}

// recoveryHash is the SHA-256 of a recovery code, as it is stored: the
// code in upper case, without the dash and spaces a person may type. A
// random code needs no slow hash, as a token does not.
func recoveryHash(code string) []byte {
	sum := sha256.Sum256([]byte(strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))))
	return sum[:]
}

// newRecoveryCodes makes recoveryCodeCount recovery codes (ten base32
// characters, shown as two groups of five) and their hashes.
func newRecoveryCodes() ([]string, [][]byte) {
	var codes []string
	var hashes [][]byte
	for range recoveryCodeCount {
		b := make([]byte, 7)
		rand.Read(b)
		c := base32.StdEncoding.EncodeToString(b)[:10]
		codes = append(codes, c[:5]+"-"+c[5:])
		hashes = append(hashes, recoveryHash(c))
	}
	return codes, hashes
}

// otpKey is the key an authenticator app scans: secret, for u's address,
// issued by -app-name.
func (app *application) otpKey(u *user, secret string) (*otp.Key, error) {
	v := url.Values{"secret": {secret}, "issuer": {app.cfg.appName}, "algorithm": {"SHA1"}, "digits": {"6"}, "period": {"30"}}
	k := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + app.cfg.appName + ":" + u.Email, RawQuery: v.Encode()}
	return otp.NewKeyFromURL(k.String())
}

// handleTwoStepForm is the account page's two-step form, by its action:
// start (the password; then the page with the QR code), confirm (the first
// code; then the recovery codes, shown once), off and codes (the password
// and a code; off tells the address and the app).
func (app *application) handleTwoStepForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	action := r.PostForm.Get("action")
	if action == "confirm" {
		app.confirmTwoStep(w, r)
		return
	}
	var codes []string
	var secret string
	app.accountForm(w, r, "two_step_"+action, func(u *user, s *loginSession) (validator, error) {
		switch action {
		case "start":
			if _, err := app.checkPassword(r, u, proofOf(r)); err != nil {
				return passwordProblem(err, "current_password")
			}
			key, err := totp.Generate(totp.GenerateOpts{Issuer: app.cfg.appName, AccountName: u.Email})
			if err != nil {
				return nil, err
			}
			secret = key.Secret()
			err = app.store.startTwoStep(r.Context(), u.ID, secret)
			if errors.Is(err, errAlready) {
				return validator{"form": "error.two_step_on_already"}, nil
			}
			return nil, err
		case "off", "codes":
			if _, err := app.checkPassword(r, u, proofOf(r)); err != nil {
				return passwordProblem(err, "current_password")
			}
			if action == "off" {
				err := app.store.disableTwoStep(r.Context(), u, app.now())
				app.outbox.kick()
				return nil, err
			}
			var hashes [][]byte
			codes, hashes = newRecoveryCodes()
			return nil, app.store.renewRecoveryCodes(r.Context(), u, hashes, app.now())
		}
		return validator{"form": "badbutton.text"}, nil
	}, func(u *user, s *loginSession) {
		switch action {
		case "start":
			app.render(w, r, http.StatusOK, "two-step.html", page{Title: "twostep.setup.title", Token: secret, Account: u})
		case "off":
			app.accountPage(w, r, http.StatusOK, u, s, "two_step_off", nil, nil, nil, "twostep.off.done")
		default:
			app.render(w, r, http.StatusOK, "two-step-codes.html", page{Title: "twostep.codes.title", Codes: codes})
		}
	})
}

// confirmTwoStep turns two-step verification on with the first code of
// the secret waiting for it, and shows the recovery codes once; a wrong
// code shows the setup page again.
func (app *application) confirmTwoStep(w http.ResponseWriter, r *http.Request) {
	u, s := app.loggedIn(w, r)
	if u == nil {
		return
	}
	codes, hashes := newRecoveryCodes()
	ok, err := app.store.enableTwoStep(r.Context(), u, strings.TrimSpace(r.PostForm.Get("code")), hashes, app.now())
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	if !ok {
		state, err := app.store.twoStep(r.Context(), u.ID)
		switch {
		case err != nil:
			app.pageError(w, r, err)
		case state.pending == "": // nothing waits: on already, or never started
			app.accountPage(w, r, http.StatusUnprocessableEntity, u, s, "two_step_start", validator{"form": "error.two_step_on_already"}, nil, nil)
		default:
			app.render(w, r, http.StatusUnprocessableEntity, "two-step.html", page{Title: "twostep.setup.title", Token: state.pending, Account: u,
				Errors: validator{"code": "error.wrong_code"}})
		}
		return
	}
	app.outbox.kick()
	app.render(w, r, http.StatusOK, "two-step-codes.html", page{Title: "twostep.codes.title", Codes: codes})
}

// handleTwoStepQR is the QR code of the secret waiting for its first
// code: a PNG for an authenticator app to scan. It changes nothing.
func (app *application) handleTwoStepQR(w http.ResponseWriter, r *http.Request) {
	u, _, err := app.browserSession(r)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	s, err := app.store.twoStep(r.Context(), u.ID)
	if err != nil || s.pending == "" {
		http.NotFound(w, r)
		return
	}
	key, err := app.otpKey(u, s.pending)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	img, err := key.Image(240, 240)
	if err != nil {
		app.pageError(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		app.pageError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// handleLoginCodeForm is the login's second step on the page: the code
// (or a recovery code) for the challenge the right password gave; then as
// a login: the session, and on to return_to.
func (app *application) handleLoginCodeForm(w http.ResponseWriter, r *http.Request) {
	if !app.readForm(w, r) {
		return
	}
	challenge := r.PostForm.Get("challenge")
	form := map[string]string{"return_to": app.returnTo(r.PostForm.Get("return_to"))}
	token, _, err := app.completeLogin(w, r, challenge, r.PostForm.Get("code"), "session")
	codePage := page{Title: "login.code.title", Token: challenge, Form: form} // again, with a message
	var t throttled
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		codePage.Errors, codePage.Args = validator{"code": "error.login_throttled"}, map[string]string{"Wait": app.locale(r).inWords(t.retry)}
		app.render(w, r, http.StatusTooManyRequests, "login-code.html", codePage)
	case errors.Is(err, errWrongCode):
		codePage.Errors = validator{"code": "error.wrong_code"}
		app.render(w, r, http.StatusUnauthorized, "login-code.html", codePage)
	case errors.Is(err, errBadChallenge), errors.Is(err, errBadCredentials):
		app.render(w, r, http.StatusUnauthorized, "login.html", page{Title: "login.title", Form: form,
			Errors: validator{"form": "error.challenge_expired"}})
	case err != nil:
		app.pageError(w, r, err)
	default:
		app.loggedInTo(w, r, token, form["return_to"])
	}
}

// handleTwoStepLogin is POST /v1/tokens/two-step: the challenge that the
// right password was answered with, and a code (or a recovery code), for
// the bearer token.
func (app *application) handleTwoStepLogin(w http.ResponseWriter, r *http.Request) {
	var input struct {
		Challenge string `json:"challenge"`
		Code      string `json:"code"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	v := validator{}
	v.check(input.Challenge != "", "challenge", "error.required")
	v.check(strings.TrimSpace(input.Code) != "", "code", "error.required")
	if len(v) > 0 {
		app.failedValidation(w, r, v)
		return
	}
	token, expiry, err := app.completeLogin(w, r, input.Challenge, input.Code, "authentication")
	var t throttled
	switch {
	case errors.As(err, &t):
		w.Header().Set("Retry-After", retryAfter(t.retry))
		app.errorResponse(w, r, http.StatusTooManyRequests, "too many failed login attempts for this account; try again later")
	case errors.Is(err, errWrongCode), errors.Is(err, errBadChallenge), errors.Is(err, errBadCredentials):
		app.errorResponse(w, r, http.StatusUnauthorized, "invalid or expired challenge or code")
	case err != nil:
		app.serverError(w, r, err)
	default:
		app.writeJSON(w, r, http.StatusCreated, envelope{"authentication_token": map[string]any{"token": token, "expiry": expiry.UTC().Truncate(time.Second)}})
	}
}
