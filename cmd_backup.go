package main

// cmd_backup.go is `signup backup DEST`.

import (
	"context"
	"fmt"
	"os"
)

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
