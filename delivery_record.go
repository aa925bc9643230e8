package main

// delivery_record.go records each attempt at an outbox row: sent, retried
// with backoff, failed for good — and tries the update again while the
// database is away — or gives a claimed row back unsent.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"
)

// releaseRows gives up the claims on rows, unsent: they stay pending.
func (d *deliverer) releaseRows(ctx context.Context, rows []*outboxRow) {
	for _, e := range rows {
		if err := d.store.release(ctx, e); err != nil {
			d.logger.Error("release "+d.channel, "id", e.ID, "error", err)
		}
		d.unhold(e)
	}
}

// recordSent marks e sent and logs it. The server has accepted it: if the
// database cannot take that just now, it is tried again until it can (or
// the shutdown deadline), so that the email is neither held nor sent twice.
func (d *deliverer) recordSent(ctx context.Context, e *outboxRow) {
	defer d.unhold(e)
	if err := d.record(ctx, "mark "+d.channel+" sent", e, func(dbctx context.Context) error { return d.store.markSent(dbctx, e) }); err != nil {
		return
	}
	d.count(e, "sent", nil)
	if d.channel == channelWebhook {
		d.logger.Info("webhook delivered", "type", e.Kind, "webhook_id", e.MessageID, "attempt", e.Attempts+1)
		return
	}
	d.logger.Info("email sent", "user_id", e.UserID, "message_id", e.MessageID, "attempt", e.Attempts+1)
}

// count counts an attempt at e in the metrics: its result, and the reply
// class of the server (sendErr nil: it accepted).
func (d *deliverer) count(e *outboxRow, result string, sendErr error) {
	d.metrics.deliveries.WithLabelValues(d.channel, metricKind(e.Kind), result).Inc()
	class := "2xx"
	var se *smtp.SMTPError
	var status httpStatusError
	switch {
	case sendErr == nil:
	case errors.As(sendErr, &se) && se.Code >= 400 && se.Code < 600:
		class = strconv.Itoa(se.Code/100) + "xx"
	case errors.As(sendErr, &status):
		class = strconv.Itoa(int(status)/100) + "xx"
	default:
		class = "none"
	}
	if d.channel == channelWebhook {
		d.metrics.webhookReply.WithLabelValues(class).Inc()
	} else {
		d.metrics.smtpReplies.WithLabelValues(class).Inc()
	}
}

// recordFailure logs a failed attempt at e once, and either schedules a
// retry or, for a permanent refusal or after giveUpAfter, marks it failed.
func (d *deliverer) recordFailure(ctx context.Context, e *outboxRow, sendErr error) {
	defer d.unhold(e)
	attempt := e.Attempts + 1
	args := []any{"user_id", e.UserID, "message_id", e.MessageID, "attempt", attempt}
	if d.channel == channelWebhook {
		args = []any{"type", e.Kind, "webhook_id", e.MessageID, "attempt", attempt}
	}
	why := sendErr.Error()
	var se *smtp.SMTPError
	if errors.As(sendErr, &se) {
		args = append(args, "smtp_code", se.Code)
		if c := se.EnhancedCode; c[0] > 0 {
			args = append(args, "smtp_enhanced_code", fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]))
			why = fmt.Sprintf("%s (%d.%d.%d)", why, c[0], c[1], c[2])
		}
	}
	var unknownCA x509.UnknownAuthorityError
	if errors.As(sendErr, &unknownCA) {
		args = append(args, "hint", "the SMTP server's certificate is signed by an authority this machine does not trust; for a private CA, start signup with SSL_CERT_FILE=/path/to/ca.pem")
	}
	args = append(args, "error", sendErr.Error())
	now := d.now()
	var mark func(ctx context.Context) error
	switch {
	case d.sender.permanent(sendErr):
		d.count(e, "failed", sendErr)
		d.logger.Error(d.channel+" rejected for good", args...)
		mark = func(ctx context.Context) error { return d.store.markFailed(ctx, e, why) }
	case now.Sub(e.CreatedAt) >= giveUpAfter:
		d.count(e, "failed", sendErr)
		d.logger.Error(d.channel+" given up after "+giveUpAfter.String(), args...)
		mark = func(ctx context.Context) error { return d.store.markFailed(ctx, e, why) }
	default:
		d.count(e, "retried", sendErr)
		wait := backoff(attempt, d.retryMin, d.retryMax)
		d.logger.Warn(d.channel+" not sent, will retry", append(args, "retry_in", wait.String())...)
		mark = func(ctx context.Context) error { return d.store.markRetry(ctx, e, now.Add(wait), why) }
	}
	if d.record(ctx, "record "+d.channel+" failure", e, mark) == nil {
		select {
		case d.resched <- struct{}{}:
		default:
		}
	}
}

// record runs mark, an update of e's row after an attempt, until it
// succeeds: the database may be away for a moment (a restart, a full
// disk), and a row left claimed is sent by no one until its claim expires.
// It waits between tries as retries do. Once draining it tries once more,
// bounded by lastWordsTimeout, and then gives up: the row stays claimed
// until its lease ends (or is released at the next start), and a send it
// failed to record as done goes once more, as after a crash. It gives up
// too when ctx (the task's: cancelled at the shutdown deadline) ends. It
// returns the last error.
func (d *deliverer) record(ctx context.Context, what string, e *outboxRow, mark func(ctx context.Context) error) error {
	dbctx := context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		draining := d.draining()
		actx, cancel := dbctx, context.CancelFunc(func() {})
		if draining {
			actx, cancel = context.WithTimeout(dbctx, lastWordsTimeout)
		}
		err := mark(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				d.logger.Info(what+": recorded after the database came back", "id", e.ID, "tries", attempt)
			}
			return nil
		}
		if draining {
			d.logger.Warn(what+": not recorded before the exit; the row stays claimed until its lease ends, and may go once more", "id", e.ID, "error", err)
			return err
		}
		wait := backoff(attempt, d.retryMin, d.retryMax)
		d.logger.Error(what, "id", e.ID, "message_id", e.MessageID, "error", err, "retry_in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.stopping: // one last try, bounded
		case <-ctx.Done():
			t.Stop()
			return err
		}
		t.Stop()
	}
}

// backoff returns how long to wait before attempt number attempt+1:
// exponential from min, capped at max, jittered into its upper half.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := max
	if attempt < 40 {
		d = min << (attempt - 1)
	}
	if d > max || d <= 0 {
		d = max
	}
	d = d/2 + mrand.N(d/2+1)
	if d < min {
		d = min
	}
	return d
}
