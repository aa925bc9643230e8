package main

// housekeeping.go holds the service's chores, each a background task on a
// ticker while it serves: watching the database file; checkpointing the
// WAL, keeping the disk reserve and purging expired records. (Renewing
// claims is the outbox's.)

import (
	"context"
	"time"
)

// tokenPurgeTick is how often expired tokens and stale limit records are
// purged.
const tokenPurgeTick = time.Hour

// every calls fn every d, a chore run as a background task, until
// shutdown begins to wait for the background tasks (or ctx ends).
func (app *application) every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-app.tasks.stopping:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// watchDatabase checks that the database file is still the one opened;
// when it is not, every request is refused from then on and the error is
// reported on lost (once: lost holds one).
func (app *application) watchDatabase(lost chan<- error) {
	if app.store.gone.Load() {
		return
	}
	if err := app.store.checkFile(); err != nil {
		app.store.gone.Store(true)
		lost <- err
	}
}

// guardDisk records whether another process pins the WAL (a reader that
// keeps it from being truncated while it holds frames not yet in the
// database file: a Litestream replica stalled, say). While it does, a
// request that writes is refused whenever the disk has less room than the
// reserve (store.lowDisk), and the first time it has, the reserve is given
// up, so that the reader has room to catch up and let go — a checkpoint
// kept from truncating (BUSY) needs that as much as one short of room
// (FULL). While writes are refused it nudges the WAL each chore (while the
// room left is over half the reserve), since a replica that has resumed
// syncs, and moves its snapshot on, only when it sees the WAL move. Once
// the reader has caught up or let go, the reserve is taken again.
func (app *application) guardDisk(pinned bool) {
	st := app.store
	st.pinned.Store(pinned)
	free := st.freeBytes()
	if pinned && free < st.reserveSize && free > st.reserveSize/2 {
		if err := st.nudge(context.Background()); err != nil {
			app.logger.Warn("could not write the WAL's nudge for the replica", "error", err)
		}
	}
	if pinned && free < st.reserveSize && st.releaseReserve() {
		app.logger.Warn("the disk is low and another process (a Litestream replica, say) keeps the WAL: gave up the disk reserve so that it has room to catch up; requests that write are refused while the room left is under the reserve's size, and the reserve is taken again once it has",
			"free_bytes", free)
	}
}

// housekeeping returns the chore run every second (or every
// -checkpoint-interval, if shorter). At its first run it warns when the
// disk has no room for the reserve. It truncates the WAL every
// -checkpoint-interval, so that old page images such as a sent message
// with its token do not linger, and at once when the WAL has grown past its
// bound or the disk is all but full; it takes the disk reserve again when it was given up and space has
// returned; and once every tokenPurgeTick it purges expired tokens and the
// limit records no window counts any more. It runs once at once, so that a
// service restarted often still purges.
func (app *application) housekeeping() func() {
	var lastPurge, lastCheckpoint time.Time
	stuck := false // the last checkpoint could not truncate the WAL
	first := true
	chore := func() {
		ctx := context.Background()
		now := app.now()
		if !app.store.pinned.Load() { // a reserve given up for a reader that must catch up first stays given up
			if err := app.store.keepReserve(); err != nil {
				app.logger.Error("keep the disk reserve", "error", err)
			}
		}
		if first && app.store.engine == "sqlite" && !app.store.hasReserve() {
			app.logger.Warn("no room on the disk for the reserve beside the database: a WAL that fills the disk may not be checkpointed until space is freed",
				"reserve_bytes", app.store.reserveSize, "path", app.store.reservePath())
		}
		first = false
		if now.Sub(lastCheckpoint) >= app.cfg.checkpointInterval || app.store.needsCheckpoint() {
			lastCheckpoint = now
			hadReserve := app.store.hasReserve()
			truncated, behind, foreign, err := app.store.checkpointAndBlame(ctx)
			own := !truncated && !foreign
			switch {
			case err != nil:
				app.logger.Error("checkpoint", "error", err)
			case !truncated && own:
				// The service's own read or write held it: no one else to
				// blame, and the next chore tries again.
				lastCheckpoint = time.Time{}
			case !truncated && !stuck:
				app.logger.Warn("checkpoint could not truncate the WAL: another process (a Litestream replica, say) reads an older snapshot; " +
					"sent tokens leave the WAL once it catches up, when the WAL starts over")
			case truncated && stuck:
				app.logger.Info("checkpoint truncates the WAL again")
			}
			if hadReserve && !app.store.hasReserve() {
				app.logger.Warn("the disk is full: gave up the disk reserve so that the WAL could be checkpointed; it is taken again once space returns",
					"checkpointed", err == nil)
			}
			stuck = err == nil && !truncated && !own
			// Pinned: the reader keeps more of the WAL than its bound, so it
			// has stalled rather than fallen a moment behind.
			app.guardDisk(stuck && behind > app.store.walLimit)
		}
		if now.Sub(lastPurge) >= tokenPurgeTick {
			lastPurge = now
			app.purge(ctx, now)
		}
	}
	chore()
	return chore
}

// purge deletes what has outlived its use: expired tokens and passkey
// ceremonies, and activity older than -activity-retention. The first
// failure ends it (the database is away or busy): each statement would
// wait as long again, and a shutdown waits for the chore.
func (app *application) purge(ctx context.Context, now time.Time) {
	n, err := app.store.purgeExpiredTokens(ctx, now)
	if err != nil {
		app.logger.Error("purge expired tokens", "error", err)
		return
	}
	if n > 0 {
		app.logger.Info("purged expired tokens", "count", n)
	}
	if err := app.store.purgeOIDC(ctx, now); err != nil {
		app.logger.Error("purge expired OpenID Connect requests and tokens", "error", err)
		return
	}
	if err := app.store.purgeCeremonies(ctx, now); err != nil {
		app.logger.Error("purge expired passkey ceremonies", "error", err)
		return
	}
	if n, err := app.store.purgeActivity(ctx, now.Add(-app.cfg.activityRetention)); err != nil {
		app.logger.Error("purge old activity", "error", err)
	} else if n > 0 {
		app.logger.Info("purged activity older than -activity-retention", "count", n, "retention", app.cfg.activityRetention.String())
	}
}
