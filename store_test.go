package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// storeTest is one behaviour of the store; open opens another handle on
// the same database, as another instance would.
type storeTest struct {
	name string
	run  func(t *testing.T, open func() *store)
}

// TestStore runs one table of store tests against both engines: SQLite in
// a temporary file, PostgreSQL as a throwaway server.
func TestStore(t *testing.T) {
	t.Parallel()
	for engine, newDB := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			for _, tt := range storeTests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					db := newDB(t)
					tt.run(t, func() *store {
						st, err := openStore(db)
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { st.close() })
						st.composer = testComposer(t)
						return st
					})
				})
			}
		})
	}
}

// signupAs signs address up on st with name, and returns the kind of email
// queued and the activation token.
func signupAs(t *testing.T, st *store, address, name string) (emailKind, string, error) {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-"+name), bcrypt.MinCost)
	token, _ := newToken()
	u := &user{CreatedAt: time.Now().Truncate(time.Millisecond), Name: name, Email: address, passwordHash: hash}
	kind, err := signupWith(t, st, u, token)
	return kind, token, err
}

// lease is the claim lease of the store tests.
const lease = time.Minute

// storeTests are the behaviours of the store that TestStore runs on both
// engines, each a named function below.
var storeTests = []storeTest{
	{"signup by the state of the address", testSignupByState},
	{"an account's language is kept, replaced by a new signup of its pending address, and changed", testAccountLanguage},
	{"send budget holds under concurrency across instances", testSendBudgetAcrossInstances},
	{"login throttle holds under concurrency across instances", testLoginThrottleAcrossInstances},
	{"concurrent signups of one new address make one account", testConcurrentSignupsOneAccount},
	{"claims are exclusive, and each instance releases only its own", testClaimsExclusive},
	{"a claim is taken over only once its lease has expired, and renewing keeps it", testClaimLease},
	{"password reset", testPasswordReset},
	{"retry composes afresh", testRetryComposesAfresh},
	{"ids are never given twice", testIDsNeverReused},
}

// testSignupByState: signup by the state of the address.
func testSignupByState(t *testing.T, open func() *store) {
	st, ctx := open(), context.Background()
	kind, first, err := signupAs(t, st, "Ann@example.com", "First")
	if err != nil || kind != "welcome" {
		t.Fatalf("new address: got %q, %v; want welcome", kind, err)
	}
	kind, second, err := signupAs(t, st, "ann@EXAMPLE.com", "Second")
	if err != nil || kind != "welcome" {
		t.Fatalf("pending address: got %q, %v; want welcome", kind, err)
	}
	if _, err := st.pendingUser(ctx, hashToken(first), time.Now()); !errors.Is(err, errNotFound) {
		t.Errorf("the first token: got %v, want errNotFound", err)
	}
	u, err := st.activate(ctx, hashToken(second), nil, nil, nil, time.Now())
	if err != nil || u.Name != "Second" || !u.Activated || u.Email != "Ann@example.com" {
		t.Fatalf("activate: got %+v, %v; want Second, activated, Ann@example.com", u, err)
	}
	kind, _, err = signupAs(t, st, "ann@example.com", "Third")
	if err != nil || kind != "account-exists" {
		t.Fatalf("activated address: got %q, %v; want account-exists", kind, err)
	}
	if u, _ := st.userByEmail(ctx, "ANN@example.com"); u.Name != "Second" || bcrypt.CompareHashAndPassword(u.passwordHash, []byte("pw-Second")) != nil {
		t.Errorf("a signup changed the activated account: got %+v, want Second with its password", u)
	}
	list, err := st.listOutbox(ctx, "pending")
	if err != nil || len(list) != 3 || list[2].Kind != "account-exists" {
		t.Errorf("outbox: got %+v, %v; want 3, the last account-exists", list, err)
	}
}

// testSendBudgetAcrossInstances: send budget holds under concurrency across instances.
func testSendBudgetAcrossInstances(t *testing.T, open func() *store) {
	stores := []*store{open(), open()}
	if _, _, err := signupAs(t, stores[0], "flood@example.com", "Flood"); err != nil {
		t.Fatal(err)
	}
	var sent, over atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			token, _ := newToken()
			err := stores[i%2].resendActivation(context.Background(), "flood@example.com", token, time.Now())
			switch {
			case err == nil:
				sent.Add(1)
			case errors.Is(err, errOverBudget):
				over.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if int(sent.Load()) != budgets[allowanceStranger].perHour-1 || int(over.Load()) != 20-(budgets[allowanceStranger].perHour-1) {
		t.Errorf("%d resends queued, %d over budget; want %d queued (the signup took one)", sent.Load(), over.Load(), budgets[allowanceStranger].perHour-1)
	}
	if list, _ := stores[1].listOutbox(context.Background(), ""); len(list) != budgets[allowanceStranger].perHour {
		t.Errorf("got %d emails in the outbox, want %d", len(list), budgets[allowanceStranger].perHour)
	}
}

// testLoginThrottleAcrossInstances: login throttle holds under concurrency across instances.
func testLoginThrottleAcrossInstances(t *testing.T, open func() *store) {
	stores := []*store{open(), open()}
	var begun, throttled atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, _, err := stores[i%2].beginLogin(context.Background(), "target@example.com", "203.0.113.7", false, time.Now())
			switch {
			case err == nil:
				begun.Add(1)
			case errors.Is(err, errThrottled):
				throttled.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if begun.Load() != maxFailedLogins {
		t.Errorf("got %d attempts let through (%d throttled), want %d", begun.Load(), throttled.Load(), maxFailedLogins)
	}
}

// testConcurrentSignupsOneAccount: concurrent signups of one new address make one account.
func testConcurrentSignupsOneAccount(t *testing.T, open func() *store) {
	stores := []*store{open(), open()}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, _, err := signupAs(t, stores[i%2], "race@example.com", fmt.Sprint("N", i)); err != nil && !errors.Is(err, errOverBudget) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var n int
	mustScan(t, stores[0].read.QueryRow(`SELECT count(*) FROM users WHERE email_key = 'race@example.com'`), &n)
	if n != 1 {
		t.Errorf("got %d accounts for one address, want 1", n)
	}
}

// testClaimsExclusive: claims are exclusive, and each instance releases only its own.
func testClaimsExclusive(t *testing.T, open func() *store) {
	stores := []*store{open(), open()}
	for i := range 60 {
		if _, _, err := signupAs(t, stores[0], fmt.Sprintf("c%d@example.com", i), "C"); err != nil {
			t.Fatal(err)
		}
	}
	claimed := make([]map[int64]bool, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		claimed[i] = map[int64]bool{}
		wg.Go(func() {
			for {
				batch, err := stores[i].claimDue(context.Background(), "email", time.Now(), lease, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(batch) == 0 {
					return
				}
				for _, e := range batch {
					claimed[i][e.ID] = true
				}
			}
		})
	}
	wg.Wait()
	for id := range claimed[0] {
		if claimed[1][id] {
			t.Errorf("email %d claimed by both instances", id)
		}
	}
	if total := len(claimed[0]) + len(claimed[1]); total != 60 {
		t.Errorf("got %d emails claimed, want 60", total)
	}
	if err := stores[0].releaseOwnClaims(context.Background(), channelEmail); err != nil {
		t.Fatal(err)
	}
	again, _ := stores[1].claimDue(context.Background(), "email", time.Now(), lease, 100)
	if len(again) != len(claimed[0]) {
		t.Errorf("after instance 0 released its %d claims, instance 1 could claim %d", len(claimed[0]), len(again))
	}
	for _, e := range again {
		if !claimed[0][e.ID] {
			t.Errorf("email %d was instance 1's own claim, released by instance 0", e.ID)
		}
	}
}

// testClaimLease: a claim is taken over only once its lease has expired,
// renewing keeps it, and only its owner can renew it.
func testClaimLease(t *testing.T, open func() *store) {
	a, b, ctx := open(), open(), context.Background()
	if _, _, err := signupAs(t, a, "lease@example.com", "L"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claimed, err := a.claimDue(ctx, "email", now, lease, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("got %d claimed (%v), want 1", len(claimed), err)
	}
	if got, _ := b.claimDue(ctx, "email", now.Add(lease/2), lease, 10); len(got) != 0 {
		t.Errorf("another instance took a live claim: got %d, want 0", len(got))
	}
	if err := b.renewClaims(ctx, []int64{claimed[0].ID}, now.Add(lease/2), 10*lease); err != nil {
		t.Fatal(err)
	}
	if err := a.renewClaims(ctx, []int64{claimed[0].ID}, now.Add(lease/2), lease); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.claimDue(ctx, "email", now.Add(lease+time.Second), lease, 10); len(got) != 0 {
		t.Errorf("another instance took a renewed claim: got %d, want 0", len(got))
	}
	if got, _ := b.claimDue(ctx, "email", now.Add(2*lease), lease, 10); len(got) != 1 {
		t.Errorf("an expired claim: got %d taken over, want 1", len(got))
	}
}

// testPasswordReset: password reset.
func testPasswordReset(t *testing.T, open func() *store) {
	st, ctx := open(), context.Background()
	_, activation, _ := signupAs(t, st, "reset@example.com", "R")
	if _, err := st.activate(ctx, hashToken(activation), nil, nil, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	bearer, bearerHash := newToken()
	u, _ := st.userByEmail(ctx, "reset@example.com")
	if err := st.loginSucceeded(ctx, u, "client", u.passwordHash, &newSession{hash: bearerHash, scope: "authentication", expiry: time.Now().Add(time.Hour)}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	token, _ := newToken()
	kind, err := st.requestPasswordReset(ctx, "reset@example.com", token, time.Now())
	if err != nil || kind != "password-reset" {
		t.Fatalf("request: got %q, %v; want password-reset", kind, err)
	}
	if _, err := st.requestPasswordReset(ctx, "nobody@example.com", token, time.Now()); !errors.Is(err, errNotFound) {
		t.Errorf("an unknown address: got %v, want errNotFound", err)
	}
	if _, _, err := st.resetPassword(ctx, hashToken(token), []byte("new-hash"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.userByToken(ctx, hashToken(bearer), "authentication", time.Now()); !errors.Is(err, errNotFound) {
		t.Errorf("the bearer token after the reset: got %v, want errNotFound", err)
	}
	if _, _, err := st.resetPassword(ctx, hashToken(token), []byte("again"), nil, time.Now()); !errors.Is(err, errNotFound) {
		t.Errorf("the reset token a second time: got %v, want errNotFound", err)
	}
}

// testRetryComposesAfresh: retry composes afresh.
func testRetryComposesAfresh(t *testing.T, open func() *store) {
	st, ctx := open(), context.Background()
	_, first, _ := signupAs(t, st, "retry@example.com", "R")
	batch, _ := st.claimDue(ctx, "email", time.Now(), lease, 10)
	if len(batch) != 1 {
		t.Fatalf("got %d claimed, want 1", len(batch))
	}
	if err := st.markFailed(ctx, batch[0], "550 no such user (5.1.1)"); err != nil {
		t.Fatal(err)
	}
	if failed, _ := st.listOutbox(ctx, "failed"); len(failed) != 1 || failed[0].LastError == "" {
		t.Fatalf("failed list: got %+v, want one with its last error", failed)
	}
	kind, u, err := st.outboxUser(ctx, batch[0].ID)
	if err != nil || kind != "welcome" {
		t.Fatalf("outboxUser: got %q, %v; want welcome", kind, err)
	}
	token, _ := newToken()
	e, _ := testComposer(t).email(emailKind(kind), u, token, time.Now())
	e.ID = batch[0].ID
	if err := st.requeue(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pendingUser(ctx, hashToken(first), time.Now()); !errors.Is(err, errNotFound) {
		t.Error("the old token: got a user, want errNotFound")
	}
	if _, err := st.pendingUser(ctx, hashToken(token), time.Now()); err != nil {
		t.Errorf("the new token: got %v, want its user", err)
	}
	if pending, _ := st.listOutbox(ctx, "pending"); len(pending) != 1 || pending[0].Attempts != 0 {
		t.Errorf("pending list: got %+v, want one with 0 attempts", pending)
	}
}

// userByEmail finds a user by email address, regardless of case.
func (st *store) userByEmail(ctx context.Context, address string) (*user, error) {
	return userByAddress(ctx, st.read, address)
}

// testIDsNeverReused: a deleted account's id, and a deleted outbox row's,
// are never given again: the app would take a new person for the old one,
// and a delivery still recording a deleted row's outcome would mark the
// new row with it.
func testIDsNeverReused(t *testing.T, open func() *store) {
	st, ctx := open(), context.Background()
	signupAs(t, st, "first@example.com", "First")
	first, err := st.userByEmail(ctx, "first@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var row int64
	mustScan(t, st.read.QueryRow(`SELECT max(id) FROM outbox`), &row)
	if _, err := st.write.Exec(`DELETE FROM users WHERE id = $1`, first.ID); err != nil {
		t.Fatal(err)
	}
	signupAs(t, st, "second@example.com", "Second")
	second, err := st.userByEmail(ctx, "second@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var next int64
	mustScan(t, st.read.QueryRow(`SELECT max(id) FROM outbox`), &next)
	if second.ID == first.ID || next <= row {
		t.Errorf("ids given again: user %d after %d, outbox row %d after %d", second.ID, first.ID, next, row)
	}
}

// testAccountLanguage: the language a signup gives is the account's (and
// its session's user's); a new signup of a pending address replaces it;
// setLanguage changes it.
func testAccountLanguage(t *testing.T, open func() *store) {
	st := open()
	ctx := context.Background()
	languageOf := func() string {
		t.Helper()
		u, err := st.userByEmail(ctx, "lang@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return u.language
	}
	for _, want := range []string{"de", "fr"} {
		hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
		u := &user{CreatedAt: time.Now().Truncate(time.Millisecond), Name: "Lang", Email: "lang@example.com", passwordHash: hash, language: want}
		if _, err := signupWith(t, st, u, mustToken()); err != nil {
			t.Fatal(err)
		}
		if got := languageOf(); got != want {
			t.Errorf("after a signup in %s: %q", want, got)
		}
	}
	u, _ := st.userByEmail(ctx, "lang@example.com")
	if err := st.setLanguage(ctx, u.ID, "en"); err != nil {
		t.Fatal(err)
	}
	if got := languageOf(); got != "en" {
		t.Errorf("after setLanguage: %q", got)
	}
}

// TestSecondInstanceRefused: a second process serving the same SQLite file
// exits 1 at once, naming the file and the first one's pid, and the first
// keeps its claims and serves on.
func TestSecondInstanceRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startSMTP(t, nil)
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	first := startBinary(t, args)
	second := startBinaryNoWait(t, args)
	if code := second.wait(t, 20*time.Second); code != 1 {
		t.Errorf("second instance exit %d, want 1", code)
	}
	db := filepath.Join(dir, "signup.db")
	want := fmt.Sprintf("%s is served by another signup process (pid %d", db, first.cmd.Process.Pid)
	if !strings.Contains(second.logs.String(), want) {
		t.Errorf("second instance said %q, want it to contain %q", second.logs, want)
	}
	signup(t, first.url, "still@example.com")
	srv.waitMessages(t, 1, 10*time.Second)

	// Once the first has stopped, a new one starts.
	first.signal(t, syscall.SIGTERM)
	if code := first.wait(t, 20*time.Second); code != 0 {
		t.Errorf("first instance exit %d", code)
	}
	startBinary(t, args)
}
