package main

// store.go opens the database (SQLite by default, PostgreSQL through
// postgres.go): pragmas, migrations, the single-process lock, the prepared
// statements of the hot path, the checkpoint, and the named errors that
// handlers test.

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
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
// that differ are chosen at open (see store_postgres.go). With SQLite, writes go
// through one connection, so concurrent writers queue in Go instead of
// meeting SQLITE_BUSY, and reads use a pool of their own; with PostgreSQL
// both are one pool.
type store struct {
	engine string // "sqlite" or "postgres"
	write  *sql.DB
	read   *sql.DB
	ckpt   *sql.DB // SQLite: one connection that checkpoints without waiting

	// instance names this process in the claims it takes on outbox rows, so that
	// it releases only its own: unique per process, even on one host.
	instance string

	// seal encrypts composed messages (SQLite only): nil stores them as they are.
	seal cipher.AEAD

	// The file at path when it was opened: if another takes its place, or
	// none, commits go where no one will look again.
	path     string
	dev, ino uint64

	// SQLite: the WAL's bound and the disk reserve (wal.go).
	walLimit, reserveSize int64

	// The statements of the hot path, prepared once on write: parsing the
	// SQL is a good part of a small transaction's cost.
	insertTokenStmt, insertRowStmt, claimStmt, markSentStmt *sql.Stmt
	userByKeyStmt, spendStmt, insertNewUserStmt             *sql.Stmt
	sessionStmt                                             *sql.Stmt     // on the read pool: forward auth checks a session on every request
	cache                                                   *sessionCache // SQLite only: see sessionCache

	// composer writes the outbox rows of the changes (outbox.go): the
	// store is given it, and calls nothing else above it.
	composer *composer

	// perDomain is how many emails of the strangers' allowance one domain
	// receives in an hour (domainPerHour), or 0 for no cap: the store is
	// given it with the limiter.
	perDomain int

	logger       *slog.Logger // for what the store handles itself (touch)
	touchFailing atomic.Bool  // the last write of a session's last use failed: logged once

	// pinned is set while another process's reader (a Litestream replica,
	// say) keeps the WAL from being truncated, with frames not yet in the
	// database file (housekeeping's last checkpoint found so): then a
	// request that writes is refused while the disk has less room than the
	// reserve (lowDisk), so that the service never takes the last of the
	// disk that reader needs to catch up.
	pinned atomic.Bool

	// gone is set once the file at -db is found deleted or replaced:
	// every request is refused from then on (routes.go refuseWhenGone).
	gone atomic.Bool
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
	read.SetMaxIdleConns(4) // kept open: opening one (its pragmas) costs more than many reads
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
	st := &store{engine: "sqlite", logger: discardLogger, write: write, read: read, cache: newSessionCache(changedMarker(name)), ckpt: ckpt, instance: instanceName(), seal: seal, path: name, dev: uint64(sys.Dev), ino: sys.Ino}
	st.walLimit, st.reserveSize = diskBounds(name)
	return st.setUp()
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
	err := tx.Commit()
	st.cache.forget() // once it is done: a session it ended is read afresh
	if err != nil {
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

// close closes the database: the write pool, the read pool and the
// checkpoint connection (PostgreSQL has one pool for all).
func (st *store) close() error {
	if st.read == st.write {
		return st.write.Close()
	}
	return errors.Join(st.read.Close(), st.write.Close(), st.ckpt.Close(), st.cache.close())
}

// instanceName is a name for this process, unique even among processes on
// one host: the host name, the pid and a random part.
func instanceName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// migrate applies, in one transaction, the migrations newer than the
// database's version (migrateTx); PostgreSQL's way in store_postgres.go.
func (st *store) migrate() error {
	if st.engine == "postgres" {
		return st.migratePostgres()
	}
	// Foreign keys off while migrating (SQLite's way to rebuild a table that
	// others refer to), checked before the commit; the write pool's one
	// connection gets them back after.
	if _, err := st.write.Exec("PRAGMA foreign_keys = OFF"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer st.write.Exec("PRAGMA foreign_keys = ON")
	tx, err := st.write.Begin()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := migrateTx(tx, "sqlite", current, "PRAGMA user_version = %d"); err != nil {
		return err
	}
	var broken int
	if err := tx.QueryRow("SELECT count(*) FROM pragma_foreign_key_check").Scan(&broken); err != nil || broken > 0 {
		return fmt.Errorf("migrate: %d rows refer to nothing after the migration (%v)", broken, err)
	}
	return tx.Commit()
}

// migrateTx runs, in tx, the migrations of engine (migrations/<engine>/)
// newer than current, the database's version, each followed by the
// statement record (with the new version for %d): one loop for both
// engines.
func migrateTx(tx *sql.Tx, engine string, current int, record string) error {
	names, err := fs.Glob(migrations, "migrations/"+engine+"/*.sql")
	if err != nil {
		return err
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
		if _, err := tx.Exec(fmt.Sprintf(record, current+i+1)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// setUp migrates the database and prepares the hot-path statements; on
// failure it closes st.
func (st *store) setUp() (*store, error) {
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

// prepare prepares the hot-path statements.
func (st *store) prepare() error {
	for stmt, query := range map[**sql.Stmt]string{
		&st.insertTokenStmt: `INSERT INTO tokens (hash, user_id, scope, expiry) VALUES ($1, $2, $3, $4)`,
		&st.insertRowStmt:   `INSERT INTO outbox (channel, kind, user_id, created_at, message_id, recipient, message, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		// Claims from several instances at once skip each other's rows.
		&st.claimStmt: `UPDATE outbox SET claimed_until = $1, claimed_by = $5
			WHERE id IN (SELECT id FROM outbox
				WHERE channel = $6 AND status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= $3
				ORDER BY next_attempt_at, id LIMIT $4` + st.skipLocked() + `)
			RETURNING id, kind, user_id, created_at, message_id, recipient, message, attempts`,
		&st.markSentStmt:  `UPDATE outbox SET status = 'sent', message = NULL, attempts = attempts + 1, claimed_until = 0, last_error = '' WHERE id = $1`,
		&st.userByKeyStmt: `SELECT ` + userColumns + ` FROM users WHERE email_key = $1`,
		// One email of a budget (store.spend counts first).
		&st.spendStmt: `INSERT INTO sends (address_key, sent_at) VALUES ($1, $2)`,
		// A new address's account, or nothing if the address has one.
		&st.insertNewUserStmt: `INSERT INTO users (created_at, name, email, email_key, password_hash, language) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (email_key) DO NOTHING RETURNING id`,
	} {
		var err error
		if *stmt, err = st.write.Prepare(query); err != nil {
			return fmt.Errorf("prepare %q: %w", query, err)
		}
	}
	var err error
	st.sessionStmt, err = st.read.Prepare(sessionQuery)
	return err
}

// changeOne runs query in tx, and returns errNotFound when it changed no
// row: what a change to one row (this account's, still as it was checked)
// answers when the row is gone or changed meanwhile.
func changeOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// millis turns t into the integer the database stores.
func millis(t time.Time) int64 { return t.UnixMilli() }

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

// discardLogger is a store's logger until the application gives it its own.
var discardLogger = slog.New(slog.DiscardHandler)
