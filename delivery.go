package main

// delivery.go is the outbox's machinery: the outbox (a deliverer per
// channel, started and stopped as one), and the deliverer, which claims
// due rows of its channel for this instance, sends them through its
// sender (mail.go's SMTP client for emails, webhooks.go's for webhooks),
// and keeps its claims alive while it sends; delivery_record.go records
// each attempt.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery tuning. A claim is renewed while its process lives; claims left
// by a killed process are released at the next start (SQLite) or expire
// within a lease (PostgreSQL, where other instances take them over).
const (
	maxConnsOut = 4               // connections a deliverer has open at once
	claimBatch  = 20              // rows claimed at a time by one connection
	giveUpAfter = 72 * time.Hour  // a temporary failure this long after queueing is final
	sweepIdle   = 2 * time.Second // the sweeper looks for due rows at least this often: another process may add some
	sweepBusy   = 50 * time.Millisecond
)

// outbox delivers what the changes queued: a deliverer per channel, so
// that a slow webhook receiver never holds up an email, nor a slow SMTP
// server a webhook. Like Litestream's Replica it starts and stops itself:
// start runs each deliverer's sweep and claim renewal as background tasks
// (through the application's one background()); stop makes it claim
// nothing more, and its tasks end once what they hold is sent.
type outbox struct {
	emails   *deliverer
	webhooks *deliverer // nil without -webhook-url
	store    *store
	logger   *slog.Logger
}

// newOutbox is the outbox of cfg: emails through emails (nil for a
// command that only queues), and webhooks when -webhook-url is set. Each
// delivery is a task started by background.
func newOutbox(cfg config, st *store, emails sender, logger *slog.Logger, m *metrics, now func() time.Time, background func(fn func(ctx context.Context))) *outbox {
	newDeliverer := func(channel string, s sender) *deliverer {
		return &deliverer{channel: channel, store: st, sender: s, logger: logger, metrics: m, now: now, background: background,
			lease: cfg.claimLease, retryMin: cfg.mailRetryMin, retryMax: cfg.mailRetryMax,
			slots: make(chan struct{}, maxConnsOut), freed: make(chan struct{}, 1), resched: make(chan struct{}, 1), stopping: make(chan struct{})}
	}
	o := &outbox{emails: newDeliverer(channelEmail, emails), store: st, logger: logger}
	if cfg.webhookURL != "" {
		o.webhooks = newDeliverer(channelWebhook, newWebhookSender(cfg.webhookURL, cfg.webhookKey, time.Now))
	}
	return o
}

// deliverers are the outbox's: emails, and webhooks when configured.
func (o *outbox) deliverers() []*deliverer {
	if o.webhooks == nil {
		return []*deliverer{o.emails}
	}
	return []*deliverer{o.emails, o.webhooks}
}

// start logs what the outbox holds and starts each deliverer's sweep and
// claim renewal. With SQLite this process holds the database lock, so any
// claim is left by one that died and is released first; on PostgreSQL
// other instances' claims are theirs until their lease expires.
func (o *outbox) start(ctx context.Context) error {
	if o.store.engine == "sqlite" {
		if err := o.store.releaseAllClaims(ctx); err != nil {
			return err
		}
	}
	pending, err := o.store.pendingByChannel(ctx)
	if err != nil {
		return err
	}
	_, failed, err := o.store.outboxCounts(ctx)
	if err != nil {
		return err
	}
	o.logger.Info("outbox", "emails_pending", pending[channelEmail], "webhooks_pending", pending[channelWebhook], "failed", failed)
	for _, d := range o.deliverers() {
		d.background(d.sweep)
		d.background(d.renew)
	}
	return nil
}

// kick starts delivery of what a change just queued: its emails and its
// webhooks.
func (o *outbox) kick() {
	for _, d := range o.deliverers() {
		d.kick()
	}
}

// kickWebhooks starts delivery of the webhook a change that sends no
// email just queued, if webhooks are on.
func (o *outbox) kickWebhooks() {
	if o.webhooks != nil {
		o.webhooks.kick()
	}
}

// stop makes the outbox claim nothing more: shutdown has begun waiting
// for background tasks. Its sweeps end at once; its deliveries finish
// what they hold, and its renewals end with them.
func (o *outbox) stop() {
	for _, d := range o.deliverers() {
		d.drain()
	}
}

// sender opens connections to where outbox rows go: one per channel, each
// with a deliverer of its own.
type sender interface {
	open(ctx context.Context) (conn, error)
	// permanent reports whether a send's error is final: no retry will change it.
	permanent(err error) bool
}

// conn carries rows to where they go (an SMTP connection, or requests to
// the webhook receiver) until it is full or fails.
type conn interface {
	send(e *outboxRow) error
	full() bool // it takes no more rows
	close()     // after the last success
	abort()     // after a failure: its state is unknown
}

// deliverer sends the outbox's due rows of one channel over at most
// maxConnsOut connections at a time, each a background task that
// shutdown waits for.
type deliverer struct {
	channel            string // channelEmail or channelWebhook: the rows it claims
	store              *store
	sender             sender
	logger             *slog.Logger
	metrics            *metrics
	now                func() time.Time
	lease              time.Duration // how long a claim lasts unless renewed
	retryMin, retryMax time.Duration
	background         func(fn func(ctx context.Context)) // the application's: starts a task that shutdown waits for

	slots    chan struct{} // one token per connection open
	freed    chan struct{} // a slot was given back: a draining renewal looks whether any is still taken
	resched  chan struct{} // a retry time changed: the sweeper looks again
	queued   atomic.Bool   // a deliver task is waiting for a slot
	stopping chan struct{} // closed when shutdown begins waiting for background tasks

	mu   sync.Mutex
	held map[int64]bool // the rows this process is sending now: the only claims it renews
}

// kick makes sure a deliver task will look for due rows soon. At most one
// is started and not yet claiming at a time (queued); it clears the flag
// before it claims, so a row committed before a kick is always seen by
// some task. A free slot is taken here, in the kicking goroutine: the task
// then claims once even if the drain begins before it runs, so an email
// committed before the answer to its request goes out before the exit.
// Without a free slot the task waits for one, and gives up at the drain:
// what is due then waits for the next start. Once draining, kick starts
// nothing.
func (d *deliverer) kick() {
	if d.draining() || !d.queued.CompareAndSwap(false, true) {
		return
	}
	select {
	case d.slots <- struct{}{}:
		d.background(func(ctx context.Context) {
			defer d.giveBack()
			d.queued.Store(false)
			d.sendDue(ctx, true)
		})
	default:
		d.background(d.deliver)
	}
}

// drain makes the deliverer claim nothing more: shutdown has begun waiting
// for background tasks.
func (d *deliverer) drain() {
	select {
	case <-d.stopping:
	default:
		close(d.stopping)
	}
}

// draining reports whether drain was called.
func (d *deliverer) draining() bool {
	select {
	case <-d.stopping:
		return true
	default:
		return false
	}
}

// deliver waits for one of the slots, then sends due rows. Once draining
// it stops waiting: it holds nothing yet, and claims nothing new — a
// connection stuck at a hung server's greeting holds a shutdown up for one
// connect timeout, not for a further batch behind it.
func (d *deliverer) deliver(ctx context.Context) {
	select {
	case d.slots <- struct{}{}:
	case <-d.stopping:
		d.queued.Store(false)
		return
	case <-ctx.Done():
		d.queued.Store(false)
		return
	}
	defer d.giveBack()
	d.queued.Store(false)
	d.sendDue(ctx, false)
}

// giveBack gives back the slot of a connection that is over.
func (d *deliverer) giveBack() {
	<-d.slots
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// sendDue claims due rows a batch at a time and sends them over one
// connection until none is due. Once draining it claims nothing more — but
// its first batch when claimFirst (its slot was taken before the drain
// began) — and begins no further row of a batch than the one in progress:
// a draining process finishes the send it is in, not what it claimed, is
// queued, or kept being added, after the wait began (that stays pending
// for the next start, or another instance). When ctx ends (the shutdown
// deadline), the exchange in progress is cut and what is unsent stays
// pending.
func (d *deliverer) sendDue(ctx context.Context, claimFirst bool) {
	dbctx := context.WithoutCancel(ctx)
	var s conn
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	for first := true; ctx.Err() == nil && ((first && claimFirst) || !d.draining()); first = false {
		batch, err := d.store.claimDue(dbctx, d.channel, d.now(), d.lease, claimBatch)
		if err != nil {
			d.logger.Error("claim "+d.channel+"s", "error", err)
			return
		}
		batch = d.hold(batch)
		if len(batch) == 0 {
			return
		}
		if len(batch) == claimBatch {
			d.kick() // a backlog: let another connection help
		}
		for i, e := range batch {
			if i > 0 && d.draining() {
				// Shutdown is waiting: what is claimed but not begun goes
				// back, pending, for the next start (or another instance),
				// rather than hold the shutdown up row by row.
				d.releaseRows(dbctx, batch[i:])
				return
			}
			if e.stale != nil {
				d.composeAfresh(dbctx, e)
				continue
			}
			if s != nil && s.full() {
				s.close()
				s = nil
			}
			var err error
			if s == nil {
				s, err = d.sender.open(ctx)
			}
			if err == nil {
				err = s.send(e)
			}
			if err == nil {
				d.recordSent(dbctx, e)
				continue
			}
			if ctx.Err() != nil {
				// The shutdown deadline cut the exchange: the rest stays
				// pending, unclaimed, for the next start.
				d.releaseRows(dbctx, batch[i:])
				return
			}
			if s == nil {
				// The server is unreachable: the whole batch waits for its retry.
				for _, e := range batch[i:] {
					d.recordFailure(dbctx, e, err)
				}
				break
			}
			d.recordFailure(dbctx, e, err)
			s.abort()
			s = nil
		}
	}
}

// composeAfresh composes afresh, with a new token, a row whose stored
// message cannot be sent as it is — queued again by `signup outbox retry`,
// or sealed with another key (the database was restored without its key
// file) — and leaves it due now. A row whose account is gone fails.
func (d *deliverer) composeAfresh(ctx context.Context, e *outboxRow) {
	if d.channel == channelWebhook {
		// A webhook is never composed again: its body is the event.
		if err := d.store.markFailed(ctx, e, "its body cannot be read ("+e.stale.Error()+"): nothing to send"); err != nil {
			d.logger.Error("mark webhook failed", "id", e.ID, "error", err)
		}
		d.unhold(e)
		return
	}
	// Composed afresh while still claimed, so that no other task takes the
	// stale row meanwhile; requeue drops the claim.
	_, err := d.store.recompose(ctx, e.ID, d.now().UTC())
	if errors.Is(err, errNotFound) {
		err = d.store.markFailed(ctx, e, "its account is gone: nothing to compose it for")
	}
	d.unhold(e) // before the kick: the task it starts must not find it held
	switch {
	case err != nil:
		d.logger.Error("compose email afresh", "id", e.ID, "error", err)
		return
	case errors.Is(e.stale, errUnsealable):
		d.logger.Warn("email composed afresh with a new link: its stored message was sealed with another key (a database restored without its .key file?)",
			"user_id", e.UserID, "old_message_id", e.MessageID)
	default:
		d.logger.Info("email composed afresh for its retry", "user_id", e.UserID, "message_id", e.MessageID)
	}
	d.kick()
}

// hold records that this process is sending the rows of batch, and
// returns them less any another task of this process still holds: a claim
// can expire under a holder whose update waits for the database, and the
// holder's outcome is the one to record.
func (d *deliverer) hold(batch []*outboxRow) []*outboxRow {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held == nil {
		d.held = map[int64]bool{}
	}
	mine := batch[:0]
	for _, e := range batch {
		if !d.held[e.ID] {
			d.held[e.ID] = true
			mine = append(mine, e)
		}
	}
	return mine
}

// unhold records that e's attempt is over: its claim is renewed no more.
func (d *deliverer) unhold(e *outboxRow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.held, e.ID)
}

// sweep kicks delivery whenever rows fall due: at start-up (what a crash or
// a shutdown deadline left behind) and after retry waits. It returns at
// once when draining begins.
func (d *deliverer) sweep(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-d.stopping:
			return
		case <-ctx.Done():
			return
		case <-d.resched:
		case <-timer.C:
		}
		wait := sweepIdle
		next, ok, err := d.store.nextDue(ctx, d.channel)
		if err != nil {
			d.logger.Error("look for due "+d.channel+"s", "error", err)
		}
		if ok {
			if until := next.Sub(d.now()); until > 0 {
				wait = min(wait, until)
			} else {
				d.kick()
				wait = sweepBusy
			}
		}
		timer.Reset(wait) // since Go 1.23, Reset drops a stale expiry by itself
	}
}

// renew extends, every third of a lease, the claims on the rows this
// process is sending now, and only those: while a send runs no other
// instance takes its row over, and a claim whose attempt is over (or whose
// process died) is free within one lease. Once draining it ends when no
// connection is open any more (none will open again), and at the
// shutdown deadline; either way it then releases this instance's claims
// of its channel, so that other instances send what it did not.
func (d *deliverer) renew(ctx context.Context) {
	defer d.releaseClaims()
	tick := time.NewTicker(d.lease / 3)
	defer tick.Stop()
	stopping := d.stopping
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.renewClaims()
		case <-stopping:
			stopping = nil // looked at below, from now on after every slot given back
		case <-d.freed:
		}
		if d.draining() && len(d.slots) == 0 {
			return
		}
	}
}

// renewClaims extends this process's claims on the rows it holds.
func (d *deliverer) renewClaims() {
	d.mu.Lock()
	ids := make([]int64, 0, len(d.held))
	for id := range d.held {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := d.store.renewClaims(context.Background(), ids, d.now(), d.lease); err != nil {
		d.logger.Error("renew claims", "error", err)
	}
}

// releaseClaims drops this instance's claims on its channel's rows, within
// lastWordsTimeout: with the database away they expire by themselves.
func (d *deliverer) releaseClaims() {
	ctx, cancel := context.WithTimeout(context.Background(), lastWordsTimeout)
	defer cancel()
	if err := d.store.releaseOwnClaims(ctx, d.channel); err != nil {
		d.logger.Warn("could not release this instance's claims: the database is unavailable; they expire within -mail-claim-lease",
			"channel", d.channel, "error", err)
	}
}
