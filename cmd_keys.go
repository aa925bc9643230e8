package main

// cmd_keys.go is `signup keys rotate`: a new signing key for OpenID
// Connect's ID tokens; the old one stays in the JWKS until the tokens it
// signed have expired.

import (
	"context"
	"fmt"
	"io"
	"time"
)

// cmdKeys runs `signup keys rotate` with the database of cfg, beside the
// serving process or without one.
func cmdKeys(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || args[0] != "rotate" {
		fmt.Fprintln(stderr, "signup: keys rotate")
		return fmt.Errorf("%w: keys rotate", errUsage)
	}
	st, err := openStore(cfg.db)
	if err != nil {
		return err
	}
	defer st.close()
	now := time.Now()
	if err := st.ensureKeys(ctx, now); err != nil {
		return err
	}
	id, err := st.rotateKey(ctx, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key %s signs from now on; the keys before it stay in the JWKS until %s\n",
		id, now.Add(idTokenTTL).UTC().Format(time.RFC3339))
	return nil
}
