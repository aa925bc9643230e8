package main

import (
	"context"
	"errors"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hasher.go is the hasher: bcrypt on at most one core per hash, and the equal wait
// where no hash is needed.

// maxHashWait bounds how long a signup waits for a core to hash its
// password; past it the service is overloaded and answers 503.
const maxHashWait = time.Second

// errBusy means no core came free for a password hash in time.
var errBusy = errors.New("busy")

// hashPassword hashes password with bcrypt on one of the hashing slots.
func (app *application) hashPassword(ctx context.Context, password string) ([]byte, error) {
	var hash []byte
	var hashErr error
	err := app.onHashSlot(ctx, func() {
		hash, hashErr = bcrypt.GenerateFromPassword([]byte(password), app.cfg.bcryptCost)
	})
	return hash, errors.Join(err, hashErr)
}

// onHashSlot runs fn, a bcrypt hash or comparison, when one of the hashing
// slots is free: at most one per core at a time, so that memory and latency
// stay flat under load. It returns errBusy if none frees up in time.
func (app *application) onHashSlot(ctx context.Context, fn func()) error {
	timer := time.NewTimer(app.hashWait)
	defer timer.Stop()
	select {
	case app.hashSlots <- struct{}{}:
	case <-timer.C:
		app.metrics.shed.Add(1)
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-app.hashSlots }()
	app.metrics.hashes.Add(1)
	start := time.Now()
	fn()
	// A moving average of the last few hashes: what imitateHash waits.
	took := int64(time.Since(start))
	app.hashTime.Store((app.hashTime.Load()*7 + took) / 8)
	return nil
}

// imitateHash waits as long as a password hash takes, without taking a
// core: a request that needs no hash answers no sooner than one that does.
func (app *application) imitateHash(ctx context.Context) {
	app.wait(ctx, time.Duration(app.hashTime.Load()))
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// estimateHashTime measures one hash at the lowest cost and scales it to
// cost: each step doubles the work. A start-up measure that costs about a
// millisecond, refined by every real hash.
func estimateHashTime(cost int) time.Duration {
	start := time.Now()
	bcrypt.GenerateFromPassword([]byte("calibrate"), bcrypt.MinCost)
	return time.Since(start) << (cost - bcrypt.MinCost)
}

// checkPassword compares password with hash, on one of the hashing slots
// (a comparison costs as much as a hash).
func (app *application) checkPassword(ctx context.Context, hash []byte, password string) (bool, error) {
	var match bool
	err := app.onHashSlot(ctx, func() {
		match = bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	})
	return match, err
}
