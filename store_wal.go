package main

// store_wal.go keeps SQLite's files within bounds on disk: the checkpoint that
// copies the WAL into the database and truncates it, the bound past which
// it runs at once, and the reserve that lets it run on a full disk.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The WAL is checkpointed at once past walLimit (a reader that holds an
// old snapshot, such as Litestream catching up, stops SQLite's own
// checkpoints from starting it over), and reserveSize bytes are kept
// allocated beside the database, to give up when the disk is full: a
// checkpoint needs room to grow the database file before it can truncate
// the WAL, and without the reserve a WAL that filled the disk would hold it
// full for good.
const (
	walLimit    = 32 << 20
	reserveSize = 16 << 20
)

// diskBounds are the WAL's bound and the reserve's size for the database
// at path: walLimit and reserveSize, or on a volume with less room, a
// quarter of its free space each, so that a small volume still has a
// reserve to give up and a WAL checkpointed before it fills it.
func diskBounds(path string) (wal, reserve int64) {
	wal, reserve = walLimit, reserveSize
	var fsStat syscall.Statfs_t
	if syscall.Statfs(path, &fsStat) != nil {
		return wal, reserve
	}
	quarter := int64(fsStat.Bavail) * int64(fsStat.Bsize) / 4
	return min(wal, max(quarter, 64<<10)), min(reserve, max(quarter, 64<<10))
}

// checkpoint copies the WAL into the database file and truncates it, so
// that old page images, such as a sent message with its token, do not
// linger in the WAL until it happens to be overwritten. It never waits: if
// another process reads an older snapshot (a Litestream replica holds a
// read transaction), it does what it can and reports truncated false. On a
// full disk it gives up the reserve and tries once more. PostgreSQL has no
// such step.
func (st *store) checkpoint(ctx context.Context) (truncated bool, err error) {
	truncated, _, _, err = st.checkpointAndBlame(ctx)
	return truncated, err
}

// checkpointTries is how often a checkpoint kept from truncating the WAL is
// tried again, checkpointGap apart, before it is given up until the next
// chore: the service's own reads and writes hold it only for moments.
const (
	checkpointTries = 5
	checkpointGap   = 20 * time.Millisecond
)

// checkpointAndBlame is checkpoint, which also reports whether another
// process kept it from truncating the WAL — a try failed while none of the
// service's own connections was at work (ownWorkBusy), so someone else's
// reader (a Litestream replica, say) holds a snapshot — and how many bytes
// of the WAL that reader keeps out of the database file (behind): little
// when it keeps up (the next write starts the WAL over in place), more and
// more when it has stalled.
func (st *store) checkpointAndBlame(ctx context.Context) (truncated bool, behind int64, foreign bool, err error) {
	if st.engine == "postgres" {
		return true, 0, false, nil
	}
	for try := 1; ; try++ {
		truncated, behind, err = st.truncateWAL(ctx)
		if isFull(err) && st.releaseReserve() {
			truncated, behind, err = st.truncateWAL(ctx)
		}
		if truncated || err != nil {
			return truncated, 0, false, err
		}
		foreign = foreign || !st.ownWorkBusy()
		if try == checkpointTries {
			return false, behind, foreign, nil
		}
		time.Sleep(checkpointGap)
	}
}

// truncateWAL runs one TRUNCATE checkpoint, reporting whether it truncated
// the WAL, and how many bytes of the WAL it could not copy into the
// database file (a reader holds them).
func (st *store) truncateWAL(ctx context.Context) (truncated bool, behind int64, err error) {
	var busy, log, done int64
	err = st.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY {
		return false, 0, nil
	}
	return err == nil && busy == 0, max(0, log-done) * pageSize, err
}

// pageSize is SQLite's page size, the size of a WAL frame's page: the
// default, which the schema never changes.
const pageSize = 4096

// nudge writes a transaction that changes nothing, for a replica that
// waits for the WAL to move before it syncs and moves its snapshot on
// (Litestream does): while writes are refused for it (lowDisk), nothing
// else would.
func (st *store) nudge(ctx context.Context) error {
	tx, err := st.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO sends (address_key, sent_at) VALUES ('nudge', 0)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM sends WHERE address_key = 'nudge'`); err != nil {
		return err
	}
	return tx.Commit()
}

// ownWorkBusy reports whether the service's own connections are reading or
// writing this instant: a checkpoint they keep from truncating the WAL is
// no sign of another process.
func (st *store) ownWorkBusy() bool {
	return st.read.Stats().InUse > 0 || st.write.Stats().InUse > 0
}

// isFull reports whether err is SQLite's "database or disk is full".
func isFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
}

// needsCheckpoint reports whether the WAL should be checkpointed now,
// whatever the clock says: it has grown past walLimit, or the disk has
// less room than the reserve, when truncating it may be what frees the
// disk (and when a reader that keeps it from that must be known).
func (st *store) needsCheckpoint() bool {
	if st.engine == "postgres" {
		return false
	}
	if info, err := os.Stat(st.path + "-wal"); err == nil && info.Size() > st.walLimit {
		return true
	}
	return st.freeBytes() < st.reserveSize || st.pinned.Load()
}

// lowDisk reports whether a request that writes must be refused: another
// process pins the WAL, and the disk has less room than the reserve — so
// that, with the reserve given up for it, that process has at least the
// reserve's room to catch up. (Writes above it go on: a replica that has
// caught up moves its snapshot on at the next write it sees.) Asked at
// every such request, it costs one statfs.
func (st *store) lowDisk() bool {
	return st.engine == "sqlite" && st.pinned.Load() && st.freeBytes() < st.reserveSize
}

// freeBytes is the room left on the database's volume for the service.
func (st *store) freeBytes() int64 {
	var fsStat syscall.Statfs_t
	if syscall.Statfs(st.path, &fsStat) != nil {
		return 1 << 62
	}
	return int64(fsStat.Bavail) * int64(fsStat.Bsize)
}

// reservePath is the reserve's file, beside the database.
func (st *store) reservePath() string { return st.path + ".reserve" }

// keepReserve allocates the reserve if it is missing and the disk has room
// for it (it is given up on a full disk, and taken again once space
// returns). It reports an error only for what is not a lack of space.
func (st *store) keepReserve() error {
	if st.engine == "postgres" || st.reserveSize == 0 {
		return nil
	}
	if _, err := os.Stat(st.reservePath()); err == nil {
		return nil
	}
	f, err := os.OpenFile(st.reservePath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("disk reserve: %w", err)
	}
	err = syscall.Fallocate(int(f.Fd()), 0, 0, st.reserveSize)
	f.Close()
	if err != nil {
		os.Remove(st.reservePath())
		if errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		return fmt.Errorf("disk reserve: %w", err)
	}
	return nil
}

// hasReserve reports whether the reserve is allocated.
func (st *store) hasReserve() bool {
	_, err := os.Stat(st.reservePath())
	return err == nil
}

// releaseReserve gives up the reserve, reporting whether there was one.
func (st *store) releaseReserve() bool {
	return os.Remove(st.reservePath()) == nil
}
