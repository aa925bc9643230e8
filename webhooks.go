package main

// webhooks.go tells the app behind signup of every account change: each
// event is an outbox row written in the transaction of the change
// (composed by outbox.go's composer.event), and the outbox's webhook
// deliverer POSTs it to -webhook-url through webhookSender, as Standard
// Webhooks say (standardwebhooks.com), signed with -webhook-secret.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// webhookTimeout is how long a receiver has to answer; silence past it is
// a failed attempt, retried.
const webhookTimeout = 10 * time.Second

// parseWebhookSecret returns the key of a Standard Webhooks secret:
// "whsec_" and the base64 of at least 24 random bytes.
func parseWebhookSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`it must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`after "whsec_" it must be base64`)
	}
	if len(key) < 24 {
		return nil, fmt.Errorf("its key is %d bytes; it must be at least 24 (e.g. whsec_$(head -c 32 /dev/urandom | base64))", len(key))
	}
	return key, nil
}

// signWebhook is a webhook's signature, as the webhook-signature header
// carries it: v1, and the base64 HMAC-SHA256 of id.timestamp.body.
func signWebhook(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// webhookSender POSTs webhooks to -webhook-url. Every failure is retried
// (for 72 hours): no answer of a receiver is final.
type webhookSender struct {
	url    string
	key    []byte
	client *http.Client
	now    func() time.Time
}

func newWebhookSender(url string, key []byte, now func() time.Time) *webhookSender {
	return &webhookSender{url: url, key: key, now: now, client: &http.Client{
		Timeout:       webhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, // a 3xx is a failure
	}}
}

func (w *webhookSender) open(ctx context.Context) (conn, error) {
	return &webhookConn{sender: w, ctx: ctx}, nil
}

func (w *webhookSender) permanent(error) bool { return false }

// webhookConn sends webhooks one request each, over the client's
// kept-alive connections, until its task's context ends.
type webhookConn struct {
	sender *webhookSender
	ctx    context.Context
}

// send POSTs e's body with its webhook-id (the same on every attempt), the
// attempt's timestamp and their signature. A 2xx is delivered; anything
// else, or no answer in webhookTimeout, is an error.
func (s *webhookConn) send(e *outboxRow) error {
	timestamp := strconv.FormatInt(s.sender.now().Unix(), 10)
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.sender.url, bytes.NewReader(e.Message))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "signup/"+version())
	req.Header.Set("webhook-id", e.MessageID)
	req.Header.Set("webhook-timestamp", timestamp)
	req.Header.Set("webhook-signature", signWebhook(s.sender.key, e.MessageID, timestamp, e.Message))
	res, err := s.sender.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s: %w", res.Status, httpStatusError(res.StatusCode))
	}
	return nil
}

// httpStatusError is a receiver's status that is not a 2xx.
type httpStatusError int

func (e httpStatusError) Error() string { return http.StatusText(int(e)) }

func (s *webhookConn) full() bool { return false }
func (s *webhookConn) close()     {}
func (s *webhookConn) abort()     {}
