package main

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/emersion/go-smtp"
)

// delivery.go is the deliverer: it claims due outbox rows and sends them.

// Delivery tuning. A claim is renewed while its process lives; claims left
// by a killed process are released at the next start (SQLite) or expire
// within a lease (PostgreSQL, where other instances take them over).
const (
	maxSessions    = 4               // SMTP sessions at once
	claimBatch     = 20              // emails claimed at a time by one session
	giveUpAfter    = 72 * time.Hour  // a temporary failure this long after queueing is final
	sweepIdle      = 2 * time.Second // the sweeper looks for due emails at least this often: another process may add some
	sweepBusy      = 50 * time.Millisecond
	tokenPurgeTick = time.Hour
)

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

// kickDelivery makes sure a deliverer will look for due emails soon. At most
// one waits for a session slot at a time; the one that takes the slot clears
// the flag before claiming, so an email committed before a kick is always
// seen by some deliverer.
func (app *application) kickDelivery() {
	if app.draining() {
		return // what is due now waits for the next start
	}
	if app.deliveryQueued.CompareAndSwap(false, true) {
		app.background(app.deliver)
	}
}

// draining reports whether shutdown has begun waiting for background tasks.
func (app *application) draining() bool {
	select {
	case <-app.stopping:
		return true
	default:
		return false
	}
}

// deliver waits for one of the maxSessions slots, then sends due emails.
func (app *application) deliver(ctx context.Context) {
	select {
	case app.sessions <- struct{}{}:
	case <-ctx.Done():
		app.deliveryQueued.Store(false)
		return
	}
	defer func() { <-app.sessions }()
	app.deliveryQueued.Store(false)
	app.sendDue(ctx)
}

// sendDue claims due emails a batch at a time and sends them over one SMTP
// session until none is due. Once shutdown begins it claims no further
// batch: a draining process finishes what it holds, not what others keep
// adding. When ctx ends (the shutdown deadline), the exchange in progress
// is cut and what is unsent stays pending.
func (app *application) sendDue(ctx context.Context) {
	dbctx := context.WithoutCancel(ctx)
	var s *smtpSession
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	// The first batch is claimed even while draining: this deliverer was
	// kicked, before shutdown began, for an email committed then.
	for first := true; ctx.Err() == nil && (first || !app.draining()); first = false {
		batch, err := app.store.claimDue(dbctx, app.now(), app.cfg.claimLease, claimBatch)
		if err != nil {
			app.logger.Error("claim emails", "error", err)
			return
		}
		if len(batch) == 0 {
			return
		}
		if len(batch) == claimBatch {
			app.kickDelivery() // a backlog: let another session help
		}
		for i, e := range batch {
			if e.unsealErr != nil {
				app.recompose(dbctx, e)
				continue
			}
			if s != nil && s.sent == maxPerSession {
				s.close()
				s = nil
			}
			var err error
			if s == nil {
				s, err = app.mailer.open(ctx)
			}
			if err == nil {
				err = s.send(app.mailer.from, e)
			}
			if err == nil {
				app.recordSent(dbctx, e)
				continue
			}
			if ctx.Err() != nil {
				// The shutdown deadline cut the exchange: the rest stays
				// pending, unclaimed, for the next start.
				for _, e := range batch[i:] {
					if err := app.store.release(dbctx, e); err != nil {
						app.logger.Error("release email", "id", e.ID, "error", err)
					}
				}
				return
			}
			if s == nil {
				// The server is unreachable: the whole batch waits for its retry.
				for _, e := range batch[i:] {
					app.recordFailure(dbctx, e, err)
				}
				break
			}
			app.recordFailure(dbctx, e, err)
			s.abort()
			s = nil
		}
	}
}

// recompose composes afresh, with a new token, an email whose stored
// message cannot be opened (the database was restored without its key
// file), and leaves it due now.
func (app *application) recompose(ctx context.Context, e *email) {
	if err := app.store.release(ctx, e); err != nil {
		app.logger.Error("release email", "id", e.ID, "error", err)
		return
	}
	if _, err := app.retryEmail(ctx, e.ID); err != nil {
		app.logger.Error("compose email afresh", "id", e.ID, "error", err)
		return
	}
	app.logger.Warn("email composed afresh with a new link: its stored message was sealed with another key (a database restored without its .key file?)",
		"user_id", e.UserID, "old_message_id", e.MessageID)
	app.kickDelivery()
}

// recordSent marks e sent and logs it.
func (app *application) recordSent(ctx context.Context, e *email) {
	if err := app.store.markSent(ctx, e); err != nil {
		app.logger.Error("mark email sent", "id", e.ID, "message_id", e.MessageID, "error", err)
		return
	}
	app.metrics.emailsSent.Add(1)
	app.logger.Info("email sent", "user_id", e.UserID, "message_id", e.MessageID, "attempt", e.Attempts+1)
}

// recordFailure logs a failed attempt at e once, and either schedules a
// retry or, for a refused address or after giveUpAfter, marks it failed.
func (app *application) recordFailure(ctx context.Context, e *email, sendErr error) {
	attempt := e.Attempts + 1
	args := []any{"user_id", e.UserID, "message_id", e.MessageID, "attempt", attempt}
	why := sendErr.Error()
	var se *smtp.SMTPError
	if errors.As(sendErr, &se) {
		args = append(args, "smtp_code", se.Code)
		if c := se.EnhancedCode; c[0] > 0 {
			args = append(args, "smtp_enhanced_code", fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]))
			why = fmt.Sprintf("%s (%d.%d.%d)", why, c[0], c[1], c[2])
		}
	}
	args = append(args, "error", sendErr.Error())
	now := app.now()
	var err error
	switch {
	case refusesRecipient(sendErr):
		app.metrics.emailsFailed.Add(1)
		app.logger.Error("email rejected for good", args...)
		err = app.store.markFailed(ctx, e, why)
	case now.Sub(e.CreatedAt) >= giveUpAfter:
		app.metrics.emailsFailed.Add(1)
		app.logger.Error("email given up after "+giveUpAfter.String(), args...)
		err = app.store.markFailed(ctx, e, why)
	default:
		wait := backoff(attempt, app.cfg.mailRetryMin, app.cfg.mailRetryMax)
		app.logger.Warn("email not sent, will retry", append(args, "retry_in", wait.String())...)
		err = app.store.markRetry(ctx, e, now.Add(wait), why)
		select {
		case app.resched <- struct{}{}:
		default:
		}
	}
	if err != nil {
		app.logger.Error("record email failure", "id", e.ID, "error", err)
	}
}

// sweep kicks delivery whenever pending emails fall due: at start-up (what a
// crash or a shutdown deadline left behind) and after retry waits. It also
// purges expired tokens and truncates the WAL from time to time. It returns
// at once when shutdown begins.
func (app *application) sweep(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastPurge, lastCheckpoint time.Time
	stuck := false // the last checkpoint could not truncate the WAL
	for {
		select {
		case <-app.stopping:
			return
		case <-ctx.Done():
			return
		case <-app.resched:
		case <-timer.C:
		}
		now := app.now()
		if now.Sub(lastCheckpoint) >= app.cfg.checkpointInterval {
			lastCheckpoint = now
			truncated, err := app.store.checkpoint(ctx)
			switch {
			case err != nil:
				app.logger.Error("checkpoint", "error", err)
			case !truncated && !stuck:
				app.logger.Warn("checkpoint could not truncate the WAL: another process (a Litestream replica, say) reads an older snapshot; " +
					"sent tokens leave the WAL once it catches up, when the WAL starts over")
			case truncated && stuck:
				app.logger.Info("checkpoint truncates the WAL again")
			}
			stuck = err == nil && !truncated
		}
		if now.Sub(lastPurge) >= tokenPurgeTick {
			lastPurge = now
			if n, err := app.store.purgeExpiredTokens(ctx, now); err != nil {
				app.logger.Error("purge expired tokens", "error", err)
			} else if n > 0 {
				app.logger.Info("purged expired tokens", "count", n)
			}
		}
		wait := sweepIdle
		next, ok, err := app.store.nextDue(ctx)
		if err != nil {
			app.logger.Error("look for due emails", "error", err)
		}
		if ok {
			if until := next.Sub(now); until > 0 {
				wait = min(wait, until)
			} else {
				app.kickDelivery()
				wait = sweepBusy
			}
		}
		timer.Reset(wait) // since Go 1.23, Reset drops a stale expiry by itself
	}
}

// renewClaims extends this instance's claims on emails every third of a
// lease, until stop is closed: while it lives no other instance takes them
// over, and once it dies they are free within one lease.
func (app *application) renewClaims(stop <-chan struct{}) {
	tick := time.NewTicker(app.cfg.claimLease / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if err := app.store.renewClaims(context.Background(), app.now(), app.cfg.claimLease); err != nil {
			app.logger.Error("renew claims", "error", err)
		}
	}
}
