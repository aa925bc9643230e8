package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// errNoPostgres means this machine has no PostgreSQL server to start.
var errNoPostgres = errors.New("no PostgreSQL server installed (Debian: apt-get install postgresql; .ci/run installs it)")

// pgServer is a throwaway PostgreSQL for the tests, started on first use:
// initdb and pg_ctl in a temporary directory (as the postgres user when the
// tests run as root: initdb refuses root), listening on a unix socket
// there only. SIGNUP_TEST_POSTGRES, a URL of a server whose user may create
// databases, is used instead when set. It returns a URL without a database
// name; pgStop, set when it started one, stops it.
var pgServer = sync.OnceValues(func() (string, error) {
	if url := os.Getenv("SIGNUP_TEST_POSTGRES"); url != "" {
		return url, nil
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return "", errNoPostgres
	}
	slices.Sort(bins)
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "signup-pg")
	if err != nil {
		return "", err
	}
	run := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	if os.Geteuid() == 0 {
		pg, err := osuser.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("tests run as root, and initdb refuses root: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
		run = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c max_connections=300", dir)
	if out, err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return "", fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	pgStop = func() {
		run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
	return "postgres://postgres@/?host=" + dir, nil
})

// pgStop stops the server pgServer started, if any; TestMain calls it.
var pgStop func()

// postgresURL returns the URL of a new, empty database on the test server,
// dropped when the test ends. Without a server the test is skipped, except
// under CI, which installs one.
func postgresURL(t testing.TB) string {
	t.Helper()
	base, err := pgServer()
	if errors.Is(err, errNoPostgres) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", withDatabase(base, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "signup_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", withDatabase(base, "postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE " + name + " WITH (FORCE)")
	})
	return withDatabase(base, name)
}

// withDatabase puts a database name into a URL such as postgres://u@/?host=DIR.
func withDatabase(base, name string) string {
	before, after, found := strings.Cut(base, "/?")
	if found {
		return before + "/" + name + "?" + after
	}
	if u, q, ok := strings.Cut(base, "?"); ok {
		return strings.TrimSuffix(u, "/") + "/" + name + "?" + q
	}
	return strings.TrimSuffix(base, "/") + "/" + name
}

// engines is the table of database engines the store tests run against.
func engines(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "signup.db") },
		"postgres": func(t *testing.T) string { return postgresURL(t) },
	}
}
