package main

// cmd_backup.go is `signup backup DEST`.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// cmdBackup is `signup backup DEST`: it writes a consistent copy of the
// database at src to dest, a plain path that must not exist yet, readable
// by its owner only, while other processes may be writing to src. It opens src as it is: no migration, and
// no message key made where there is none. The copy is checked before it
// is reported done.
func cmdBackup(ctx context.Context, src, dest string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// An absolute path: SQLite would read "file:…" as a URI, with its own
	// name and options (mode=memory writes nothing).
	dest, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// VACUUM INTO would overwrite nothing but an empty file; creating dest
	// ourselves (O_EXCL) refuses any existing one and sets its mode.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	if err := copyDatabase(ctx, src, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// copyDatabase copies the SQLite database at src into the empty file dest
// and checks the copy.
func copyDatabase(ctx context.Context, src, dest string) error {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: src}).EscapedPath()+"?mode=rw&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO $1`, dest); err != nil {
		return err
	}
	copied, err := sql.Open("sqlite", "file:"+(&url.URL{Path: dest}).EscapedPath()+"?mode=ro")
	if err != nil {
		return err
	}
	defer copied.Close()
	var check string
	if err := copied.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil {
		return fmt.Errorf("checking the copy: %w", err)
	}
	if check != "ok" {
		return fmt.Errorf("the copy at %s does not check: %s", dest, check)
	}
	if info, err := os.Stat(dest); err != nil || info.Size() == 0 || info.Mode().Perm() != 0o600 {
		return errors.Join(err, fmt.Errorf("the copy at %s is empty or not mode 0600", dest))
	}
	return nil
}
