package main

// respond.go reads JSON requests and writes JSON answers, errors included: one
// helper per kind of error answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// envelope is a JSON response body.
type envelope map[string]any

// writeJSON sends data as JSON with status, never to be cached (answers
// carry account data and tokens) nor sniffed as anything but JSON. Data
// that cannot be encoded (a bug) is logged and answered 500.
func (app *application) writeJSON(w http.ResponseWriter, r *http.Request, status int, data any) {
	js, err := json.MarshalIndent(data, "", "\t")
	if err != nil {
		app.logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "error", err)
		http.Error(w, "the server encountered a problem and could not process your request", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(js, '\n'))
}

// answer sends the outcome of a request that may fail three ways: an error
// (as serverError: 503 when no core was free to hash), a message per
// invalid field (422), or success: status with data.
func (app *application) answer(w http.ResponseWriter, r *http.Request, errs validator, err error, status int, data any) {
	switch {
	case err != nil:
		app.serverError(w, r, err)
	case len(errs) > 0:
		app.failedValidation(w, r, errs)
	default:
		app.writeJSON(w, r, status, data)
	}
}

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// errTooLarge marks a body over maxBodyBytes: a 413, not a 400.
var errTooLarge = fmt.Errorf("body must not be larger than %d bytes", maxBodyBytes)

// readJSON decodes the body, one JSON object with no unknown fields, into
// dst, with an error message a client can act on.
func (app *application) readJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var maxBytesError *http.MaxBytesError
		if errors.As(err, &maxBytesError) {
			return errTooLarge
		}
		return fmt.Errorf("reading body: %w", err)
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(body) {
		return errors.New("body must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syntaxError *json.SyntaxError
		var typeError *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntaxError):
			return fmt.Errorf("body contains badly-formed JSON (at character %d)", syntaxError.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("body contains badly-formed JSON")
		case errors.As(err, &typeError):
			if typeError.Field != "" {
				return fmt.Errorf("body contains incorrect JSON type for field %q", typeError.Field)
			}
			return fmt.Errorf("body must be a JSON object (incorrect JSON type at character %d)", typeError.Offset)
		case errors.Is(err, io.EOF):
			return errors.New("body must not be empty")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("body contains unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return err
		}
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("body must only contain a single JSON value")
	}
	return nil
}

// errorResponse sends {"error": message} with status.
func (app *application) errorResponse(w http.ResponseWriter, r *http.Request, status int, message any) {
	app.writeJSON(w, r, status, envelope{"error": message})
}

// failure is how to answer an error that is not the client's doing.
type failure int

const (
	failureNone        failure = iota // the client hung up: no one to answer
	failureBusy                       // 503: no core came free in time to hash (errBusy)
	failureUnavailable                // 503: the database cannot take it now, or its file is gone
	failureInternal                   // 500: a bug
)

// classify tells how to answer err, and logs it once, where it is handled,
// with the request's method and path (never its query string, which may
// hold a token): a database that cannot take writes (a full disk, say),
// does not answer within the request's deadline, or whose file is gone (a
// new read connection finds an empty one), at WARN;
// anything else unexpected at ERROR. The API (serverError) and the pages
// (pageError) answer by it alike.
func (app *application) classify(r *http.Request, err error) failure {
	switch {
	case app.clientGone(r):
		return failureNone
	case errors.Is(err, errBusy):
		return failureBusy
	case isUnavailable(err) || errors.Is(err, context.DeadlineExceeded) || app.store.checkFile() != nil:
		app.logger.Warn("database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		return failureUnavailable
	default:
		app.logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "error", err)
		return failureInternal
	}
}

// serverError answers err, which is not the client's doing, as classify
// says: a generic 500, or a 503 with Retry-After.
func (app *application) serverError(w http.ResponseWriter, r *http.Request, err error) {
	switch app.classify(r, err) {
	case failureBusy:
		w.Header().Set("Retry-After", "1")
		app.errorResponse(w, r, http.StatusServiceUnavailable, "the server is busy; try again in a moment")
	case failureUnavailable:
		w.Header().Set("Retry-After", "5")
		app.errorResponse(w, r, http.StatusServiceUnavailable, "the service cannot store your request right now; try again in a moment")
	case failureInternal:
		app.errorResponse(w, r, http.StatusInternalServerError, "the server encountered a problem and could not process your request")
	}
}

// clientGone reports whether the client of r hung up before its answer,
// which ends the request's context and so whatever it was waiting for: not
// an internal error, and there is no one to answer. It is logged at DEBUG.
func (app *application) clientGone(r *http.Request) bool {
	if !errors.Is(r.Context().Err(), context.Canceled) { // not the request's own deadline either
		return false
	}
	app.logger.Debug("client went away", "method", r.Method, "path", r.URL.Path)
	return true
}

// badRequest answers 400, or 413 for a body that is too large.
func (app *application) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errTooLarge) {
		app.errorResponse(w, r, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	app.errorResponse(w, r, http.StatusBadRequest, err.Error())
}

// failedValidation answers 422 with a message per field, in the
// language of the request (Accept-Language).
func (app *application) failedValidation(w http.ResponseWriter, r *http.Request, errs map[string]string) {
	l := app.locale(r)
	messages, err := l.errors(errs, map[string]string{"AppName": app.cfg.appName, "Domains": strings.Join(app.cfg.signupDomains, ", ")})
	if err != nil {
		app.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Language", l.tag)
	app.errorResponse(w, r, http.StatusUnprocessableEntity, messages)
}
