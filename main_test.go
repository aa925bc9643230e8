package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(builtBinary(t), "-version", "-env", "production").Output() // no guard stops it
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "signup ") || len(line) <= len("signup ") {
		t.Fatalf("-version printed %q", line)
	}
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...))
	_, body := post(t, "GET", p.url+"/v1/healthcheck", nil)
	if v := body["system_info"].(map[string]any)["version"]; "signup "+v.(string) != line {
		t.Errorf("healthcheck version %q, -version %q", v, line)
	}
}

func TestFileModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-mail-dir", filepath.Join(dir, "mail")}
	p := startRun(t, args, nil) // development capture
	signup(t, p.url, "modes@example.com")
	var eml string
	waitFor(t, 10*time.Second, "a captured email", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		if len(files) > 0 {
			eml = files[0]
		}
		return len(files) > 0
	})
	waitFor(t, 10*time.Second, "the log of the captured file", func() bool {
		return containsLine(p.logs.String(), "email captured", "file="+eml)
	})
	data, _ := os.ReadFile(eml)
	tokenOf(t, data)
	want := map[string]fs.FileMode{
		"signup.db": 0o600, "signup.db-wal": 0o600, "signup.db-shm": 0o600,
		"mail": 0o700 | fs.ModeDir, filepath.Join("mail", filepath.Base(eml)): 0o600,
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := info.Mode() & (fs.ModePerm | fs.ModeDir); got != mode {
			t.Errorf("%s: mode %v, want %v", name, got, mode)
		}
	}
}
