package main

// cmd_outbox.go is `signup outbox list` and `signup outbox retry`.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// cmdOutbox runs `signup outbox list` and `signup outbox retry`, beside
// the serving process or without one.
func cmdOutbox(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	usage := fmt.Errorf("%w: outbox list [-status pending|failed|sent] [-json] | outbox retry (ID... | -failed)", errUsage)
	if len(args) == 0 {
		fmt.Fprintln(stderr, "signup:", usage)
		return usage
	}
	fs := flag.NewFlagSet("outbox "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	status := fs.String("status", "", "only emails with this `status`: pending, failed or sent")
	asJSON := fs.Bool("json", false, "print JSON, one object per email")
	failed := fs.Bool("failed", false, "retry every failed email")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	switch *status {
	case "", "pending", "failed", "sent":
	default:
		fmt.Fprintf(stderr, "signup: -status must be pending, failed or sent, not %q\n", *status)
		return fmt.Errorf("%w: bad -status", errUsage)
	}
	st, err := openStore(cfg.db)
	if err != nil {
		return err
	}
	defer st.close()

	switch {
	case args[0] == "list" && fs.NArg() == 0:
		list, err := st.listOutbox(ctx, *status)
		if err != nil {
			return err
		}
		if *asJSON {
			return encodeEach(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tTO\tATTEMPTS\tQUEUED\tNEXT ATTEMPT\tLAST ERROR")
		for _, e := range list {
			next := "-"
			if e.Status == "pending" {
				next = e.NextAttempt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.Kind, e.Status, e.Recipient, e.Attempts,
				e.CreatedAt.Format(time.RFC3339), next, e.LastError)
		}
		return tw.Flush()

	case args[0] == "retry" && (*failed != (fs.NArg() > 0)):
		var ids []int64
		if *failed {
			list, err := st.listOutbox(ctx, "failed")
			if err != nil {
				return err
			}
			for _, e := range list {
				ids = append(ids, e.ID)
			}
		}
		for _, arg := range fs.Args() {
			id, err := strconv.ParseInt(arg, 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "signup: %q is not an email id\n", arg)
				return fmt.Errorf("%w: bad id %q", errUsage, arg)
			}
			ids = append(ids, id)
		}
		var errs []error
		for _, id := range ids {
			to, err := st.markForRetry(ctx, id, time.Now())
			if errors.Is(err, errNotFound) {
				err = errors.New("no such email")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("email %d: %w", id, err))
				continue
			}
			fmt.Fprintf(stdout, "email %d to %s queued again; the running service composes it afresh, with its own base URL, app name and templates, and sends it within seconds (or the next start does)\n", id, to)
		}
		if len(ids) == 0 {
			fmt.Fprintln(stdout, "no failed emails")
		}
		return errors.Join(errs...)
	}
	fmt.Fprintln(stderr, "signup:", usage)
	return usage
}
