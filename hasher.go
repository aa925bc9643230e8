package main

// hasher.go is the hasher: bcrypt on at most one core per hash, so that
// memory and latency stay flat under load, and the equal wait for requests
// that need no hash, so that they answer no sooner — and are shed no
// less — than those that do.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// maxHashWait bounds how long a request waits for a core to hash its
// password; past it the service is overloaded and answers 503.
const maxHashWait = time.Second

// errBusy means no core came free for a password hash in time.
var errBusy = errors.New("busy")

// hasher hashes and compares passwords with bcrypt, one per core at a time.
type hasher struct {
	cost    int
	slots   chan struct{} // one token per hash running
	maxWait time.Duration // longest wait for a slot before errBusy
	took    atomic.Int64  // how long a hash takes, in ns: a moving average
	metrics *metrics

	// wait sleeps for d or until ctx ends, in place of a hash; tests record it.
	wait func(ctx context.Context, d time.Duration)
}

// newHasher returns a hasher at cost with a slot per core, its estimate of
// a hash's time measured once at the lowest cost.
func newHasher(cost int, m *metrics) *hasher {
	h := &hasher{cost: cost, slots: make(chan struct{}, runtime.GOMAXPROCS(0)), maxWait: maxHashWait, metrics: m, wait: sleep}
	h.took.Store(int64(estimateHashTime(cost)))
	return h
}

// hash hashes password on one of the slots.
func (h *hasher) hash(ctx context.Context, password string) ([]byte, error) {
	var hash []byte
	var hashErr error
	err := h.onSlot(ctx, func() {
		hash, hashErr = bcrypt.GenerateFromPassword(bcryptInput(password), h.cost)
	})
	return hash, errors.Join(err, hashErr)
}

// compare reports whether password matches hash, on one of the slots (a
// comparison costs as much as a hash).
func (h *hasher) compare(ctx context.Context, hash []byte, password string) (bool, error) {
	if len(hash) == 0 {
		// No password (a passkey's account, an invitation's): nothing
		// matches, in the time a comparison takes.
		return false, h.imitate(ctx)
	}
	var match bool
	err := h.onSlot(ctx, func() {
		match = bcrypt.CompareHashAndPassword(hash, bcryptInput(password)) == nil
	})
	return match, err
}

// bcryptInput is what bcrypt is given for password: the password itself
// up to bcrypt's limit of 72 bytes, and beyond it (72 characters of an
// accented or non-Latin script can be 288 bytes) the base64 of its SHA-256,
// so that all of it counts and none is cut off. No stored hash changes:
// passwords over 72 bytes were refused before.
func bcryptInput(password string) []byte {
	if len(password) <= 72 {
		return []byte(password)
	}
	sum := sha256.Sum256([]byte(password))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

// imitate stands in for a hash where none is needed: it queues for a slot
// like a hash, and is shed alike (errBusy), then holds the slot as long as
// a hash takes, without using the core. So a request answers alike, in
// time and under load, whether or not it needed a hash.
func (h *hasher) imitate(ctx context.Context) error {
	return h.queue(ctx, func() { h.wait(ctx, time.Duration(h.took.Load())) })
}

// onSlot runs fn, a bcrypt hash or comparison, when a slot is free, and
// counts it and its time. It returns errBusy if none frees up within
// maxWait.
func (h *hasher) onSlot(ctx context.Context, fn func()) error {
	return h.queue(ctx, func() {
		h.metrics.hashes.Add(1)
		start := time.Now()
		fn()
		// A moving average of the last few hashes: what imitate waits.
		took := int64(time.Since(start))
		h.took.Store((h.took.Load()*7 + took) / 8)
	})
}

// queue runs fn when a slot is free, or returns errBusy if none frees up
// within maxWait.
func (h *hasher) queue(ctx context.Context, fn func()) error {
	timer := time.NewTimer(h.maxWait)
	defer timer.Stop()
	start := time.Now()
	select {
	case h.slots <- struct{}{}:
		h.metrics.slotWait.Observe(time.Since(start).Seconds())
	case <-timer.C:
		h.metrics.slotWait.Observe(time.Since(start).Seconds())
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	fn()
	return nil
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
