package main

// tokens.go makes and hashes tokens, and handles the requests that email an address
// a new one: a new activation link, and an operator's retry of an email.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"net/http"
	"time"
)

// newToken returns a random token, of any scope (an emailed link's, a
// bearer token), and the SHA-256 hash that is all the database keeps of it.
func newToken() (plaintext string, hash []byte) {
	b := make([]byte, 16)
	rand.Read(b)
	plaintext = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	sum := sha256.Sum256([]byte(plaintext))
	return plaintext, sum[:]
}

// hashToken is the SHA-256 hash under which a token is stored, or nil for a
// string that cannot be a token.
func hashToken(token string) []byte {
	if len(token) != 26 {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// emailRequestTime is how long a request that may email an address takes,
// whatever the address's state: well over the work of the slowest state
// (about 3 ms at rest), so that the medians of every state are one.
const emailRequestTime = 25 * time.Millisecond

// emailRequest is a request that may email address (a resend, a password
// reset): it validates address and, if it is well formed, has queue store
// what goes to it (with token, where its email carries one), then starts
// delivery. Only a malformed address is an error the caller shows: the
// answer is otherwise the same whoever owns it — an address with no email
// due (errNotFound) or over its send budget included.
func (app *application) emailRequest(ctx context.Context, address, request string, queue func(token string, now time.Time) error) (validator, error) {
	v := validator{}
	validateEmail(v, address)
	if len(v) > 0 {
		return v, nil
	}
	// The work differs by the state of the address (an email composed and
	// queued, or nothing): every answer waits out the same time instead.
	start := time.Now()
	defer func() { sleep(ctx, emailRequestTime-time.Since(start)) }()
	release, allowed := app.reserveEmail(ctx)
	if !allowed {
		app.overClientBudget(address, request)
		return nil, nil
	}
	token, _ := newToken()
	err := queue(token, app.now())
	if err != nil {
		release() // nothing was queued
	}
	switch {
	case errors.Is(err, errNotFound):
		return nil, nil
	case errors.Is(err, errOverBudget):
		app.overBudget(address, request)
		return nil, nil
	case err != nil:
		return nil, err
	}
	app.outbox.kick()
	return nil, nil
}

// resendActivation sends a new activation link to address if it belongs
// to an account that is not activated yet, replacing its earlier links; for
// any other address it does nothing.
func (app *application) resendActivation(ctx context.Context, address string) (validator, error) {
	return app.emailRequest(ctx, address, "resend", func(token string, now time.Time) error {
		return app.store.resendActivation(ctx, address, token, now)
	})
}

// handleEmailRequest answers a JSON {"email": …} request that may send an
// email: 202 with message, whoever owns the address.
func (app *application) handleEmailRequest(w http.ResponseWriter, r *http.Request, send func(ctx context.Context, address string) (validator, error), message string) {
	var input struct {
		Email string `json:"email"`
	}
	if err := app.readJSON(w, r, &input); err != nil {
		app.badRequest(w, r, err)
		return
	}
	errs, err := send(r.Context(), input.Email)
	app.answer(w, r, errs, err, http.StatusAccepted, envelope{"message": message})
}

// handleResendActivation emails a new activation link to an account
// that is not activated yet; it answers the same for any address.
func (app *application) handleResendActivation(w http.ResponseWriter, r *http.Request) {
	app.handleEmailRequest(w, r, app.resendActivation,
		"if an account with this address is waiting for activation, an email is on its way with a new link")
}
