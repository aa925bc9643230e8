package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRepeatedErrorsLoggedOnce: a warning that repeats (the same message
// and error, from request after request) is written once per window, then
// with how many were held back; other records pass as they are.
func TestRepeatedErrorsLoggedOnce(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	h := newQuietHandler(slog.NewTextHandler(&out, nil))
	start := time.Now()
	warn := func(at time.Duration, msg string, attrs ...any) {
		r := slog.NewRecord(start.Add(at), slog.LevelWarn, msg, 0)
		r.Add(attrs...)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 580 { // 580 requests over 90 s
		warn(time.Duration(i)*90*time.Second/580, "database unavailable", "method", "POST", "path", "/v1/users", "error", "database or disk is full")
	}
	warn(0, "database unavailable", "method", "GET", "path", "/account", "error", "database file gone")
	warn(0, "email not sent, will retry", "user_id", 1, "error", "451 try again")
	warn(0, "email not sent, will retry", "user_id", 2, "error", "451 try again")
	warn(0, "a warning without an error")
	warn(0, "a warning without an error")

	logs := out.String()
	if n := strings.Count(logs, "database or disk is full"); n < 9 || n > 10 {
		t.Errorf("580 repeats of one error over 90 s: %d lines, want one per 10 s window:\n%s", n, logs)
	}
	if !strings.Contains(logs, "repeated=") {
		t.Errorf("no count of the repeats held back:\n%s", logs)
	}
	for _, want := range []string{"database file gone", "user_id=1", "user_id=2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("%s was held back as a repeat:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, "a warning without an error"); n != 2 {
		t.Errorf("warnings without an error: %d written, want 2", n)
	}
}
