package main

// store_postgres.go holds what differs when the store is PostgreSQL, which lets
// several instances share one database: opening it, migrating under an
// advisory lock, and the statements that only it needs. Every query of the
// store is written once, with $n placeholders, which both engines take.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also the "pgx" database/sql driver, which the tests use
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option: how long sent
// data may stay unacknowledged before the connection is dropped.
const tcpUserTimeout = 0x12

// isPostgresURL reports whether -db names a PostgreSQL database.
func isPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// Bounds on a PostgreSQL connection that goes silent (a network partition,
// a server gone without a word): a connection is given up after pgConnect
// (unless the URL's connect_timeout says otherwise), and an open one whose
// data goes unacknowledged, or whose peer stops answering keep-alives, after
// about pgSilence, so that no pooled connection hangs for the partition's
// length.
const (
	pgConnect = 5 * time.Second
	pgSilence = 10 * time.Second
)

// openPostgres connects to the database at url and migrates it.
func openPostgres(url string) (*store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnect
	}
	dialer := &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: pgSilence / 2, Interval: pgSilence / 4, Count: 2},
		Control: func(network, address string, c syscall.RawConn) error {
			var err error
			if strings.HasPrefix(network, "tcp") {
				c.Control(func(fd uintptr) {
					err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(pgSilence.Milliseconds()))
				})
			}
			return err
		},
	}
	cfg.DialFunc = dialer.DialContext
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	st := &store{engine: "postgres", logger: discardLogger, write: db, read: db, instance: instanceName()}
	return st.setUp()
}

// migrationLock is the advisory lock under which instances migrate, so
// that two starting together do not race.
const migrationLock = 7_462_819_530

// migratePostgres applies, in one transaction (migrateTx), the migrations
// that schema_migrations does not list, holding the migration lock.
func (st *store) migratePostgres() error {
	ctx := context.Background()
	conn, err := st.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, migrationLock)
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRow(`SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := migrateTx(tx, "postgres", current, "INSERT INTO schema_migrations (version) VALUES (%d)"); err != nil {
		return err
	}
	return tx.Commit()
}

// skipLocked ends the subquery that picks outbox rows to claim: on PostgreSQL,
// instances claiming at once skip each other's rows instead of waiting.
// SQLite has one writer at a time and no such clause.
func (st *store) skipLocked() string {
	if st.engine == "postgres" {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// lockAddress serializes, until tx ends, the transactions about one
// address: "count, then insert if under the limit" (the send budget, the
// login throttle) and "look, then create or replace" (a signup) would
// otherwise race between instances under READ COMMITTED. SQLite runs one
// write transaction at a time and needs nothing.
func (st *store) lockAddress(ctx context.Context, tx *sql.Tx, address string) error {
	if st.engine != "postgres" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, strings.ToLower(address))
	return err
}

// postgresUnavailable reports whether err means PostgreSQL cannot be
// reached or cannot take writes for now: the server refusing (classes 08,
// 53, 57P: connection trouble, resources such as a full disk, shutting
// down), or the connection gone from under a statement — refused, reset,
// or closed without a word (an unexpected EOF: an immediate restart, a
// failover), or found closed before a statement was sent on it.
func postgresUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57P")
	}
	var ce *pgconn.ConnectError
	var ne *net.OpError
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}
