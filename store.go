package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// migrations holds the schema of each engine, one numbered file per
// version, in migrations/sqlite and migrations/postgres. SQLite remembers
// the last applied in PRAGMA user_version, PostgreSQL in schema_migrations.
//
//go:embed migrations
var migrations embed.FS

// errNotFound means no row matched.
var errNotFound = errors.New("record not found")

// store is the database: SQLite by default, or PostgreSQL when several
// instances share it. One set of methods serves both; the few statements
// that differ are chosen at open (see postgres.go). With SQLite, writes go
// through one connection, so concurrent writers queue in Go instead of
// meeting SQLITE_BUSY, and reads use a pool of their own; with PostgreSQL
// both are one pool.
type store struct {
	engine string // "sqlite" or "postgres"
	write  *sql.DB
	read   *sql.DB
	ckpt   *sql.DB // SQLite: one connection that checkpoints without waiting

	// instance names this process in the claims it takes on emails, so that
	// it releases only its own: unique per process, even on one host.
	instance string

	// seal encrypts composed messages (SQLite only): nil stores them as they are.
	seal cipher.AEAD

	// The file at path when it was opened: if another takes its place, or
	// none, commits go where no one will look again.
	path     string
	dev, ino uint64

	// The statements of the hot path, prepared once on write: parsing the
	// SQL is a good part of a small transaction's cost.
	insertTokenStmt, insertEmailStmt, claimStmt, markSentStmt *sql.Stmt
	userByKeyStmt, spendStmt, insertNewUserStmt               *sql.Stmt
}

// user is an account, as the API shows it.
type user struct {
	ID           int64     `json:"id"`
	CreatedAt    time.Time `json:"created_at"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	Activated    bool      `json:"activated"`
	passwordHash []byte
}

// email is one row of the outbox: a composed message and its delivery state.
type email struct {
	ID   int64
	Kind string // welcome, activation

	UserID    int64
	CreatedAt time.Time
	MessageID string
	Recipient string
	Message   []byte
	Attempts  int

	unsealErr error // the stored message could not be opened: compose it afresh
}

// openStore opens the database that -db names, a PostgreSQL URL or an
// SQLite file (created if needed, readable by its owner only), and
// migrates it to the latest schema.
func openStore(name string) (*store, error) {
	if isPostgresURL(name) {
		return openPostgres(name)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	info, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sys := info.Sys().(*syscall.Stat_t)

	// synchronous(FULL): a commit that was answered 202 survives a power cut,
	// not just a crash of the process. secure_delete: a sent message's
	// token is overwritten in the file, not just unlinked.
	// mode=rw: a connection never creates the file (created above), so
	// one opened after the file was deleted fails instead of starting an
	// empty database there.
	dsn := "file:" + (&url.URL{Path: name}).EscapedPath() +
		"?mode=rw&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(FULL)&_pragma=secure_delete(1)&_txlock=immediate"
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(4)
	// The checkpoint gives up at once rather than wait for a reader (a
	// Litestream replica holds one): waiting would hold back every writer.
	ckpt, err := sql.Open("sqlite", strings.Replace(dsn, "busy_timeout(5000)", "busy_timeout(0)", 1))
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	ckpt.SetMaxOpenConns(1)
	seal, err := loadSealKey(name + ".key")
	if err != nil {
		write.Close()
		read.Close()
		ckpt.Close()
		return nil, err
	}
	st := &store{engine: "sqlite", write: write, read: read, ckpt: ckpt, instance: instanceName(), seal: seal, path: name, dev: uint64(sys.Dev), ino: sys.Ino}
	if err := st.migrate(); err != nil {
		st.close()
		return nil, err
	}
	if err := st.prepare(); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// loadSealKey reads the key that seals composed messages from path, beside
// the database, creating it (32 random bytes, mode 0600) if it is missing.
// Copies of the database alone — a Litestream replica, a backup, the WAL's
// old frames — then hold no readable token: the key never enters them.
func loadSealKey(path string) (cipher.AEAD, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		err = writeNewFile(path, key)
		if errors.Is(err, fs.ErrExist) { // another process made it first
			key, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("message key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("message key %s: %d bytes, want 32", path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// writeNewFile writes data to a new file at path, mode 0600, durably.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// sealed messages start with this byte; a composed message never does.
const sealedVersion = 1

// sealMessage encrypts msg for the outbox, if this store seals.
func (st *store) sealMessage(msg []byte) []byte {
	if st.seal == nil || msg == nil {
		return msg
	}
	nonce := make([]byte, st.seal.NonceSize(), st.seal.NonceSize()+len(msg)+st.seal.Overhead()+1)
	rand.Read(nonce)
	return append([]byte{sealedVersion}, st.seal.Seal(nonce, nonce, msg, nil)...)
}

// errUnsealable means a sealed message cannot be opened with this key (the
// database was restored on another machine without its key file): the
// email must be composed afresh.
var errUnsealable = errors.New("message sealed with another key")

// openMessage decrypts a message from the outbox; one stored unsealed (by
// PostgreSQL, or before sealing existed) comes back as it is.
func (st *store) openMessage(blob []byte) ([]byte, error) {
	if len(blob) == 0 || blob[0] != sealedVersion {
		return blob, nil
	}
	if st.seal == nil || len(blob) < 1+st.seal.NonceSize() {
		return nil, errUnsealable
	}
	n := st.seal.NonceSize()
	msg, err := st.seal.Open(nil, blob[1:1+n], blob[1+n:], nil)
	if err != nil {
		return nil, errUnsealable
	}
	return msg, nil
}

// errDatabaseGone means the file at -db was deleted or replaced while the
// database was open: what is written now is lost at the next start.
var errDatabaseGone = errors.New("database file gone")

// checkFile reports errDatabaseGone if the file at the database's path is no
// longer the one it opened. A PostgreSQL database has no file to watch.
func (st *store) checkFile() error {
	if st.path == "" {
		return nil
	}
	info, err := os.Stat(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s was deleted", errDatabaseGone, st.path)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errDatabaseGone, err)
	}
	sys := info.Sys().(*syscall.Stat_t)
	if uint64(sys.Dev) != st.dev || sys.Ino != st.ino {
		return fmt.Errorf("%w: %s was replaced by another file", errDatabaseGone, st.path)
	}
	return nil
}

// commit commits tx, and then makes sure it went to the file that -db
// names: a caller answers its client only after that.
func (st *store) commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return err
	}
	return st.checkFile()
}

// isUnavailable reports whether err means the database cannot take writes
// for now or for good (a full disk, an I/O error, a busy lock, the file
// gone): the client should try again later, not be told of a bug.
func isUnavailable(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
			return true
		}
	}
	return errors.Is(err, errDatabaseGone) || postgresUnavailable(err)
}

// close closes both pools.
func (st *store) close() error {
	if st.read == st.write {
		return st.write.Close()
	}
	return errors.Join(st.read.Close(), st.write.Close(), st.ckpt.Close())
}

// instanceName is a name for this process, unique even among processes on
// one host: the host name, the pid and a random part.
func instanceName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// migrate applies, in one transaction, the SQLite migrations newer than the
// database's user_version.
func (st *store) migrate() error {
	if st.engine == "postgres" {
		return st.migratePostgres()
	}
	names, err := fs.Glob(migrations, "migrations/sqlite/*.sql")
	if err != nil {
		return err
	}
	tx, err := st.write.Begin()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(names) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", current, len(names))
	}
	for i, name := range names[current:] {
		schema, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(string(schema)); err != nil {
			return fmt.Errorf("migrate %s: %w", path.Base(name), err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", current+i+1)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return tx.Commit()
}

// prepare prepares the hot-path statements.
func (st *store) prepare() error {
	for stmt, query := range map[**sql.Stmt]string{
		&st.insertTokenStmt: `INSERT INTO tokens (hash, user_id, scope, expiry) VALUES ($1, $2, $3, $4)`,
		&st.insertEmailStmt: `INSERT INTO outbox (kind, user_id, created_at, message_id, recipient, message, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		// Claims from several instances at once skip each other's rows.
		&st.claimStmt: `UPDATE outbox SET claimed_until = $1, claimed_by = $5
			WHERE id IN (SELECT id FROM outbox
				WHERE status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= $3
				ORDER BY next_attempt_at, id LIMIT $4` + st.skipLocked() + `)
			RETURNING id, kind, user_id, created_at, message_id, recipient, message, attempts`,
		&st.markSentStmt:  `UPDATE outbox SET status = 'sent', message = NULL, attempts = attempts + 1, claimed_until = 0, last_error = '' WHERE id = $1`,
		&st.userByKeyStmt: `SELECT ` + userColumns + ` FROM users WHERE email_key = $1`,
		// One email of the address's budget, if any is left.
		&st.spendStmt: `INSERT INTO sends (address_key, sent_at) SELECT $1, $2
			WHERE (SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $3) < $4
			AND (SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $5) < $6`,
		// A new address's account, or nothing if the address has one.
		&st.insertNewUserStmt: `INSERT INTO users (created_at, name, email, email_key, password_hash) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (email_key) DO NOTHING RETURNING id`,
	} {
		var err error
		if *stmt, err = st.write.Prepare(query); err != nil {
			return fmt.Errorf("prepare %q: %w", query, err)
		}
	}
	return nil
}

// millis turns t into the integer the database stores.
func millis(t time.Time) int64 { return t.UnixMilli() }

// The send budget of an address: emails of every kind together.
const (
	budgetPerHour = 3
	budgetPerDay  = 10
)

// errOverBudget means the address has had its share of emails for now.
var errOverBudget = errors.New("send budget of the address spent")

// addressState reports whether address has an activated account, and
// whether it is over its send budget: what a signup needs to know before it
// spends a password hash. One query: it runs before every signup.
func (st *store) addressState(ctx context.Context, address string, now time.Time) (activated, over bool, err error) {
	var act sql.NullInt64
	var hour, day int
	err = st.read.QueryRowContext(ctx, `SELECT (SELECT activated FROM users WHERE email_key = $1),
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $2),
		(SELECT count(*) FROM sends WHERE address_key = $1 AND sent_at > $3)`,
		strings.ToLower(address), millis(now.Add(-time.Hour)), millis(now.Add(-24*time.Hour))).Scan(&act, &hour, &day)
	return act.Valid && act.Int64 == 1, hour >= budgetPerHour || day >= budgetPerDay, err
}

// queue inserts e, and the token it carries (emailTokens), spending one
// email of the recipient's budget: errOverBudget if none is left.
func (st *store) queue(ctx context.Context, tx *sql.Tx, e *email, tokenHash []byte) error {
	res, err := tx.StmtContext(ctx, st.spendStmt).ExecContext(ctx, strings.ToLower(e.Recipient), millis(e.CreatedAt),
		millis(e.CreatedAt.Add(-time.Hour)), budgetPerHour, millis(e.CreatedAt.Add(-24*time.Hour)), budgetPerDay)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errOverBudget
	}
	if tok, ok := emailTokens[e.Kind]; ok {
		if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, tokenHash, e.UserID, tok.scope, millis(e.CreatedAt.Add(tok.ttl))); err != nil {
			return err
		}
	}
	return tx.StmtContext(ctx, st.insertEmailStmt).QueryRowContext(ctx, e.Kind, e.UserID, millis(e.CreatedAt), e.MessageID, e.Recipient, st.sealMessage(e.Message), millis(e.CreatedAt)).Scan(&e.ID)
}

// composer makes the email of a kind for a user.
type composer func(kind string, to *user) (*email, error)

// signup does, in one transaction, what a signup does to the address of u,
// by the state of that address:
//   - new: u is created, with an activation token (tokenHash) and the
//     welcome email;
//   - pending: that account takes u's name, password hash and time, its
//     earlier tokens are deleted, and it gets a new token and the welcome
//     email;
//   - activated: nothing changes; its owner gets the account-exists email.
//
// It returns the kind of email queued. Each counts against the address's
// send budget: over it, nothing changes and it returns errOverBudget, as it
// does when u has no password hash (the caller saw no need for one) but the
// account turns out to need one.
func (st *store) signup(ctx context.Context, u *user, tokenHash []byte, compose composer) (string, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, u.Email); err != nil {
		return "", err
	}
	// Most signups are for a new address: try that first.
	var existing *user
	inserted := false
	if u.passwordHash != nil {
		err := tx.StmtContext(ctx, st.insertNewUserStmt).QueryRowContext(ctx, millis(u.CreatedAt), u.Name, u.Email, strings.ToLower(u.Email), u.passwordHash).Scan(&u.ID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", err
		}
		inserted = err == nil
	}
	if !inserted {
		existing, err = scanUser(tx.StmtContext(ctx, st.userByKeyStmt).QueryRowContext(ctx, strings.ToLower(u.Email)))
		if err != nil && !errors.Is(err, errNotFound) {
			return "", err
		}
	}
	switch {
	case inserted:
	case existing != nil && existing.Activated:
		e, err := compose("account-exists", existing)
		if err != nil {
			return "", err
		}
		if err := st.queue(ctx, tx, e, nil); err != nil {
			return "", err
		}
		return e.Kind, st.commit(tx)
	case u.passwordHash == nil:
		return "", errOverBudget
	case existing != nil:
		u.ID = existing.ID
		if _, err := tx.ExecContext(ctx, `UPDATE users SET name = $1, password_hash = $2, created_at = $3 WHERE id = $4`,
			u.Name, u.passwordHash, millis(u.CreatedAt), u.ID); err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, u.ID); err != nil {
			return "", err
		}
	default:
		return "", errOverBudget // no hash for an account that needs one (see above)
	}
	e, err := compose("welcome", u)
	if err != nil {
		return "", err
	}
	if err := st.queue(ctx, tx, e, tokenHash); err != nil {
		return "", err
	}
	return e.Kind, st.commit(tx)
}

// resend gives the account of address, if it is waiting for activation, a
// new activation token (tokenHash) in place of its earlier ones, and queues
// the activation email, in one transaction. It returns errNotFound for any
// other address, and errOverBudget when the address has had its share.
func (st *store) resend(ctx context.Context, address string, tokenHash []byte, compose composer) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return err
	}
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_key = $1 AND activated = 0`, strings.ToLower(address)))
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = 'activation'`, u.ID); err != nil {
		return err
	}
	e, err := compose("activation", u)
	if err != nil {
		return err
	}
	if err := st.queue(ctx, tx, e, tokenHash); err != nil {
		return err
	}
	return st.commit(tx)
}

// The login throttle: at most this many failed attempts per address in the
// window; more are refused until the oldest leaves it.
const (
	maxFailedLogins = 5
	loginWindow     = 15 * time.Minute
)

// errThrottled means an address has had its failed logins for now.
var errThrottled = errors.New("too many failed login attempts")

// beginLogin records a login attempt on address, which counts as failed
// until loginSucceeded clears it (so concurrent guesses cannot overshoot),
// and returns the account of address, or nil. With maxFailedLogins attempts
// already in the window it records nothing and returns errThrottled and
// how long until the oldest leaves the window.
func (st *store) beginLogin(ctx context.Context, address string, now time.Time) (*user, time.Duration, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return nil, 0, err
	}
	key := strings.ToLower(address)
	var n int
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT count(*), min(attempted_at) FROM login_attempts WHERE address_key = $1 AND attempted_at > $2`,
		key, millis(now.Add(-loginWindow))).Scan(&n, &oldest); err != nil {
		return nil, 0, err
	}
	if n >= maxFailedLogins {
		return nil, time.UnixMilli(oldest.Int64).Add(loginWindow).Sub(now), errThrottled
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO login_attempts (address_key, attempted_at) VALUES ($1, $2)`, key, millis(now)); err != nil {
		return nil, 0, err
	}
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_key = $1`, key))
	if errors.Is(err, errNotFound) {
		u, err = nil, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return u, 0, st.commit(tx)
}

// loginSucceeded clears the failed attempts on u's address and stores a
// bearer token (its hash) for u, valid for authTTL.
func (st *store) loginSucceeded(ctx context.Context, u *user, tokenHash []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_attempts WHERE address_key = $1`, strings.ToLower(u.Email)); err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, st.insertTokenStmt).ExecContext(ctx, tokenHash, u.ID, "authentication", millis(now.Add(authTTL))); err != nil {
		return err
	}
	return st.commit(tx)
}

// userByToken returns the user holding the unexpired token of scope with
// this hash, or errNotFound.
func (st *store) userByToken(ctx context.Context, tokenHash []byte, scope string, now time.Time) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = $2 AND expiry > $3)`, tokenHash, scope, millis(now)))
}

// deleteToken deletes the token of scope with this hash.
func (st *store) deleteToken(ctx context.Context, tokenHash []byte, scope string) error {
	_, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE hash = $1 AND scope = $2`, tokenHash, scope)
	return err
}

// queuePasswordReset queues, in one transaction, what a password reset for
// address sends: for an activated account, the password-reset email with a
// new token (tokenHash) in place of its earlier ones; for a pending one,
// the activation email, as resend does. It returns the kind queued,
// errNotFound for an unknown address, errOverBudget over the budget.
func (st *store) queuePasswordReset(ctx context.Context, address string, tokenHash []byte, compose composer) (string, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := st.lockAddress(ctx, tx, address); err != nil {
		return "", err
	}
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_key = $1`, strings.ToLower(address)))
	if err != nil {
		return "", err
	}
	kind := "password-reset"
	if !u.Activated {
		kind = "activation"
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2`, u.ID, emailTokens[kind].scope); err != nil {
		return "", err
	}
	e, err := compose(kind, u)
	if err != nil {
		return "", err
	}
	if err := st.queue(ctx, tx, e, tokenHash); err != nil {
		return "", err
	}
	return kind, st.commit(tx)
}

// setPasswordByToken sets the password hash of the user holding the unexpired
// password-reset token with this hash, marks the account activated (the
// reset proved the inbox), and deletes every token of the user: reset,
// activation and authentication. It returns errNotFound for no such token.
func (st *store) setPasswordByToken(ctx context.Context, tokenHash, passwordHash []byte, now time.Time) (*user, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx, `UPDATE users SET password_hash = $1, activated = 1
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $2 AND scope = 'password-reset' AND expiry > $3)
		RETURNING `+userColumns, passwordHash, tokenHash, millis(now)))
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, u.ID); err != nil {
		return nil, err
	}
	return u, st.commit(tx)
}

const userColumns = `id, created_at, name, email, activated, password_hash`

func scanUser(row interface{ Scan(...any) error }) (*user, error) {
	var u user
	var created int64
	err := row.Scan(&u.ID, &created, &u.Name, &u.Email, &u.Activated, &u.passwordHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	return &u, nil
}

// userByEmail finds a user by email address, regardless of case.
func (st *store) userByEmail(ctx context.Context, address string) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE email_key = $1`, strings.ToLower(address)))
}

// pendingUser returns the user, not activated yet, that holds the unexpired
// activation token with this hash, or errNotFound.
func (st *store) pendingUser(ctx context.Context, tokenHash []byte, now time.Time) (*user, error) {
	return scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE activated = 0 AND id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)`,
		tokenHash, millis(now)))
}

// cancelSignup deletes the account, not activated yet, that holds the
// unexpired activation token with this hash, with its tokens and emails.
// It returns errNotFound when there is no such account.
func (st *store) cancelSignup(ctx context.Context, tokenHash []byte, now time.Time) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM users
		WHERE activated = 0 AND id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)`,
		tokenHash, millis(now))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return st.commit(tx)
}

// activate marks as activated the user holding the unexpired activation
// token with this hash, and deletes all of that user's activation tokens.
// It returns errNotFound when no such token exists.
func (st *store) activate(ctx context.Context, tokenHash []byte, now time.Time) (*user, error) {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx,
		`UPDATE users SET activated = 1
		WHERE id = (SELECT user_id FROM tokens WHERE hash = $1 AND scope = 'activation' AND expiry > $2)
		RETURNING `+userColumns, tokenHash, millis(now)))
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = 'activation'`, u.ID); err != nil {
		return nil, err
	}
	return u, st.commit(tx)
}

// purgeExpiredTokens deletes the tokens that expired before now, and the
// send-budget and login-attempt records that no window counts any more.
func (st *store) purgeExpiredTokens(ctx context.Context, now time.Time) (int64, error) {
	if _, err := st.write.ExecContext(ctx, `DELETE FROM sends WHERE sent_at <= $1`, millis(now.Add(-24*time.Hour))); err != nil {
		return 0, err
	}
	if _, err := st.write.ExecContext(ctx, `DELETE FROM login_attempts WHERE attempted_at <= $1`, millis(now.Add(-loginWindow))); err != nil {
		return 0, err
	}
	res, err := st.write.ExecContext(ctx, `DELETE FROM tokens WHERE expiry <= $1`, millis(now))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// claimDue claims for this instance up to limit pending emails that are due
// at now and not claimed by another deliverer (or whose claim has expired),
// until now+lease.
func (st *store) claimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*email, error) {
	rows, err := st.claimStmt.QueryContext(ctx, millis(now.Add(lease)), millis(now), millis(now), limit, st.instance)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var emails []*email
	for rows.Next() {
		var e email
		var created int64
		var blob []byte
		if err := rows.Scan(&e.ID, &e.Kind, &e.UserID, &created, &e.MessageID, &e.Recipient, &blob, &e.Attempts); err != nil {
			return nil, err
		}
		e.Message, e.unsealErr = st.openMessage(blob)
		e.CreatedAt = time.UnixMilli(created).UTC()
		emails = append(emails, &e)
	}
	return emails, rows.Err()
}

// markSent records that the SMTP server accepted e, and drops its content.
func (st *store) markSent(ctx context.Context, e *email) error {
	_, err := st.markSentStmt.ExecContext(ctx, e.ID)
	return err
}

// markRetry records a failed attempt at e and when to try again.
func (st *store) markRetry(ctx context.Context, e *email, next time.Time, lastErr string) error {
	_, err := st.write.ExecContext(ctx,
		`UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, claimed_until = 0, last_error = $2 WHERE id = $3`,
		millis(next), lastErr, e.ID)
	return err
}

// markFailed records that e will never be sent, and drops its content.
func (st *store) markFailed(ctx context.Context, e *email, lastErr string) error {
	_, err := st.write.ExecContext(ctx,
		`UPDATE outbox SET status = 'failed', message = NULL, attempts = attempts + 1, claimed_until = 0, last_error = $1 WHERE id = $2`,
		lastErr, e.ID)
	return err
}

// release gives up the claim on e without counting an attempt, so that it
// is sent as soon as a deliverer is free (or at the next start).
func (st *store) release(ctx context.Context, e *email) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE id = $1`, e.ID)
	return err
}

// releaseAllClaims drops every claim: at start-up, claims left by a process
// that crashed or was killed mid-send. Only the holder of an SQLite
// database's lock calls it, so no other process still holds any of them.
func (st *store) releaseAllClaims(ctx context.Context) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE status = 'pending' AND claimed_until > 0`)
	return err
}

// releaseOwnClaims drops this instance's claims: at shutdown, so that
// other instances send what it did not.
func (st *store) releaseOwnClaims(ctx context.Context) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = 0 WHERE claimed_by = $1 AND status = 'pending' AND claimed_until > 0`, st.instance)
	return err
}

// renewClaims extends this instance's live claims to now+lease: while it
// runs, no other instance takes them over; once it dies, they expire
// within one lease.
func (st *store) renewClaims(ctx context.Context, now time.Time, lease time.Duration) error {
	_, err := st.write.ExecContext(ctx, `UPDATE outbox SET claimed_until = $1 WHERE claimed_by = $2 AND status = 'pending' AND claimed_until > $3`,
		millis(now.Add(lease)), st.instance, millis(now))
	return err
}

// checkpoint copies the WAL into the database file and truncates it, so
// that old page images, such as a sent message with its token, do not
// linger in the WAL until it happens to be overwritten. It never waits: if
// another process reads an older snapshot (a Litestream replica holds a
// read transaction), it does what it can and reports truncated false.
// PostgreSQL has no such step.
func (st *store) checkpoint(ctx context.Context) (truncated bool, err error) {
	if st.engine == "postgres" {
		return true, nil
	}
	var busy, log, done int
	err = st.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY {
		return false, nil
	}
	return err == nil && busy == 0, err
}

// outboxCounts returns how many emails are pending and how many failed.
func (st *store) outboxCounts(ctx context.Context) (pending, failed int, err error) {
	err = st.read.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM outbox WHERE status = 'pending'),
		(SELECT count(*) FROM outbox WHERE status = 'failed')`).Scan(&pending, &failed)
	return pending, failed, err
}

// nextDue returns when the earliest pending, unclaimed email is due, and
// false if there is none.
func (st *store) nextDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := st.read.QueryRowContext(ctx,
		`SELECT min(CASE WHEN next_attempt_at > claimed_until THEN next_attempt_at ELSE claimed_until END) FROM outbox WHERE status = 'pending'`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return time.UnixMilli(next.Int64), true, nil
}

// backup writes a consistent copy of the database at src to dest, which
// must not exist yet, while other processes may be writing to src.
func backup(ctx context.Context, src, dest string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// VACUUM INTO would overwrite nothing but an empty file; creating dest
	// ourselves (O_EXCL) refuses any existing one and sets its mode.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	st, err := openStore(src)
	if err != nil {
		os.Remove(dest)
		return err
	}
	defer st.close()
	if _, err := st.write.ExecContext(ctx, `VACUUM INTO $1`, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// errLocked means another process serves the database.
var errLocked = errors.New("database in use")

// lockDatabase takes the lock that lets one process at a time serve the
// SQLite database at name: an exclusive flock on name+".lock", which holds
// the owner's pid and is released when the process ends, however it ends.
// backup and outbox do not take it.
func lockDatabase(name string) (unlock func(), err error) {
	lockName := name + ".lock"
	f, err := os.OpenFile(lockName, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock database: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is served by another signup process (pid %s, holding %s); stop it first",
				errLocked, name, strings.TrimSpace(string(holder)), lockName)
		}
		return nil, fmt.Errorf("lock database: %w", err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// outboxEntry is an email as `signup outbox list` shows it.
type outboxEntry struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"`
	Status      string    `json:"status"`
	Recipient   string    `json:"recipient"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt_at"`
	LastError   string    `json:"last_error"`
}

// listOutbox returns the emails with status (all when empty), oldest first.
func (st *store) listOutbox(ctx context.Context, status string) ([]outboxEntry, error) {
	rows, err := st.read.QueryContext(ctx, `SELECT id, kind, status, recipient, attempts, created_at, next_attempt_at, last_error
		FROM outbox WHERE $1 = '' OR status = $2 ORDER BY id`, status, status)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []outboxEntry
	for rows.Next() {
		var e outboxEntry
		var created, next int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Status, &e.Recipient, &e.Attempts, &created, &next, &e.LastError); err != nil {
			return nil, err
		}
		e.CreatedAt, e.NextAttempt = time.UnixMilli(created).UTC(), time.UnixMilli(next).UTC()
		list = append(list, e)
	}
	return list, rows.Err()
}

// errClaimed means an email is being sent right now.
var errClaimed = errors.New("being sent right now")

// outboxUser returns the kind of outbox row id and the user it goes to.
func (st *store) outboxUser(ctx context.Context, id int64) (string, *user, error) {
	var kind string
	var userID int64
	err := st.read.QueryRowContext(ctx, `SELECT kind, user_id FROM outbox WHERE id = $1`, id).Scan(&kind, &userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, errNotFound
	}
	if err != nil {
		return "", nil, err
	}
	u, err := scanUser(st.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, userID))
	return kind, u, err
}

// requeue replaces outbox row e.ID with e, composed afresh, due now, with
// its attempts and the 72-hour window starting over. The new token it
// carries, if its kind carries one, replaces the user's earlier ones.
func (st *store) requeue(ctx context.Context, e *email, tokenHash []byte) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'pending', message = $1, message_id = $2, created_at = $3,
		next_attempt_at = $4, attempts = 0, claimed_until = 0, last_error = ''
		WHERE id = $5 AND NOT (status = 'pending' AND claimed_until > $6)`,
		st.sealMessage(e.Message), e.MessageID, millis(e.CreatedAt), millis(e.CreatedAt), e.ID, millis(e.CreatedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errClaimed
	}
	if tok, ok := emailTokens[e.Kind]; ok {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND scope = $2`, e.UserID, tok.scope); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, scope, expiry) VALUES ($1, $2, $3, $4)`,
			tokenHash, e.UserID, tok.scope, millis(e.CreatedAt.Add(tok.ttl))); err != nil {
			return err
		}
	}
	return st.commit(tx)
}
