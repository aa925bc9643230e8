package main

// logging.go is the service's log: slog's text handler, with a warning or
// error that repeats — the same message and error many times a second, as
// a full disk or a database away makes them — written once per window and
// then with how many more there were.

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// repeatWindow is how long a warning or error, once written, is not
// written again with the same message and error.
const repeatWindow = 10 * time.Second

// quietHandler writes records through next, but holds back a warning or an
// error that repeats one written less than repeatWindow ago (repeatKey:
// the same message and error, whatever request met it) and counts it; the
// next one written after the window says how many were held back
// (repeated=N).
type quietHandler struct {
	next  slog.Handler
	state *quietState // shared by the handlers WithAttrs and WithGroup make
}

type quietState struct {
	mu   sync.Mutex
	seen map[string]*quietEntry
}

type quietEntry struct {
	written time.Time
	held    int
}

// newQuietHandler is a quietHandler writing through next.
func newQuietHandler(next slog.Handler) *quietHandler {
	return &quietHandler{next: next, state: &quietState{seen: map[string]*quietEntry{}}}
}

func (h *quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	key := repeatKey(r)
	if key == "" {
		return h.next.Handle(ctx, r)
	}
	s := h.state
	s.mu.Lock()
	e, ok := s.seen[key]
	if ok && r.Time.Sub(e.written) < repeatWindow {
		e.held++
		s.mu.Unlock()
		return nil
	}
	held := 0
	if ok {
		held = e.held
	}
	if len(s.seen) > 1000 { // a bound on what is remembered
		clear(s.seen)
	}
	s.seen[key] = &quietEntry{written: r.Time}
	s.mu.Unlock()
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeated", held))
	}
	return h.next.Handle(ctx, r)
}

// repeatKey is what makes two records the same repetition: their level,
// message, error and every other attribute but those of the request that
// met it (method, path) and the wait before its retry. A record without an
// error never repeats, nor do two about different rows or accounts.
func repeatKey(r slog.Record) string {
	hasErr := false
	parts := []string{r.Level.String(), r.Message}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method", "path", "retry_in":
		default:
			hasErr = hasErr || a.Key == "error"
			parts = append(parts, a.Key+"="+a.Value.String())
		}
		return true
	})
	if !hasErr {
		return ""
	}
	return strings.Join(parts, "\x00")
}

func (h *quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietHandler{next: h.next.WithAttrs(attrs), state: h.state}
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{next: h.next.WithGroup(name), state: h.state}
}
