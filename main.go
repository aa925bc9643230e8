// Command signup lets people sign up, keeps their accounts in SQLite and
// sends each a welcome email over SMTP in the background, without losing one
// on shutdown, crash or SMTP outage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
)

func main() {
	// What libraries log (zitadel/oidc's request errors) is written as the
	// service writes its own lines. (Here, not in run: tests run run() in
	// their own process, and leave the process's default alone.)
	slog.SetDefault(slog.New(newQuietHandler(slog.NewTextHandler(os.Stderr, nil))))
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "signup:", err)
		os.Exit(1)
	}
}

// errUsage marks errors in the command line or SIGNUP_* environment; they
// exit with status 2.
var errUsage = errors.New("usage")

// version returns the module version and VCS revision the binary was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += "+dirty"
			}
		}
	}
	return v
}

// run is the whole program: it parses the configuration, then serves, or
// runs the subcommand named in args.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, "signup", version())
		return nil
	}
	logger := slog.New(newQuietHandler(slog.NewTextHandler(stderr, nil)))

	if len(rest) == 2 && rest[0] == "backup" {
		if isPostgresURL(cfg.db) {
			fmt.Fprintln(stderr, "signup: backup copies an SQLite database; for PostgreSQL use pg_dump, e.g. pg_dump --format=custom --file=signup.dump", cfg.db)
			return fmt.Errorf("%w: backup of a PostgreSQL database", errUsage)
		}
		return cmdBackup(ctx, cfg.db, rest[1])
	}
	switch {
	case len(rest) == 0:
	case rest[0] == "outbox":
		return cmdOutbox(ctx, cfg, rest[1:], stdout, stderr)
	case rest[0] == "users":
		return cmdUsers(ctx, cfg, rest[1:], stdout, stderr)
	case rest[0] == "clients":
		return cmdClients(ctx, cfg, rest[1:], stdout, stderr)
	case rest[0] == "keys":
		return cmdKeys(ctx, cfg, rest[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "signup: unknown arguments %q; run signup -h\n", rest)
		return fmt.Errorf("%w: unknown arguments %q", errUsage, rest)
	}
	tmpl, err := loadTemplates(cfg.templates, cfg.languages, cfg.defaultLanguage)
	if err != nil {
		fmt.Fprintln(stderr, "signup:", err)
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	if !isPostgresURL(cfg.db) { // several instances may share PostgreSQL
		unlock, err := lockDatabase(cfg.db)
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := openStore(cfg.db)
	if err != nil {
		return err
	}
	defer st.close()

	mailer, err := newMailer(cfg, logger)
	if err != nil {
		return err
	}
	if cfg.smtpHost == "" {
		capture, err := startCapture(cfg.mailDir, logger)
		if err != nil {
			return err
		}
		defer capture.close()
		mailer.addr = capture.addr
		mailer.tlsMode = "none"
		logger.Info("development mail capture", "dir", cfg.mailDir, "smtp", capture.addr)
	}

	ln, err := listen(cfg.host, cfg.port, getenv)
	if err != nil {
		return err
	}
	if cfg.baseURLDefault {
		if addr, ok := ln.Addr().(*net.TCPAddr); ok {
			cfg.baseURL = "http://localhost:" + strconv.Itoa(addr.Port)
		}
	}
	if cfg.appURL != "" && !cookieReaches(cfg) {
		logger.Warn("the app's host cannot see the session cookie: a login would land on the login page again; give signup a -base-url on the app's host, or a -cookie-domain over both",
			"app_url", cfg.appURL, "base_url", cfg.baseURL, "cookie_domain", cfg.cookieDomain)
	}
	app := newApplication(cfg, logger, st, mailer, tmpl)
	return app.serve(ctx, ln, getenv)
}
