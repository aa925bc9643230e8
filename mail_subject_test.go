package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

// TestHeaderLinesWithin76: no header line of any email, in any language,
// runs past 76 characters — a long subject's encoded words are folded onto
// lines of their own (RFC 2047 §2) — and the subject reads back whole.
func TestHeaderLinesWithin76(t *testing.T) {
	t.Parallel()
	c := testComposer(t)
	for _, lang := range shippedLanguages {
		for kind := range emailKinds {
			u := &user{ID: 1, Name: "Ada", Email: "ada@example.com", language: lang, oldEmail: "ada@example.com", newEmail: "ada@new.example"}
			e, err := c.email(kind, u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			head, _, _ := strings.Cut(string(e.Message), "\r\n\r\n")
			for line := range strings.SplitSeq(head, "\r\n") {
				if len(line) > 76 {
					t.Errorf("%s %s: a header line of %d characters: %s", lang, kind, len(line), line)
				}
			}
			r, err := mail.CreateReader(bytes.NewReader(e.Message))
			if err != nil {
				t.Fatal(err)
			}
			subject, err := r.Header.Subject()
			if err != nil || !strings.Contains(subject, "Signup") || strings.Contains(subject, "=?") || strings.Contains(subject, "  ") {
				t.Errorf("%s %s: the subject reads back as %q (%v)", lang, kind, subject, err)
			}
		}
	}
}
