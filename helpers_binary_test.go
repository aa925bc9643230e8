package main

// helpers_binary_test.go builds the signup binary once and starts it as a
// process, for what is about the process: exit codes and real signals.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// buildBinary builds the signup binary once for the tests that need a real
// process and real signals.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "signup-test")
	if err != nil {
		return "", err
	}
	binaryDir = dir
	bin := filepath.Join(dir, "signup")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// binaryDir holds the built binary, removed by TestMain.
var binaryDir string

// process is the real binary, running.
type process struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{}
	err  error // after done
}

// startBinary runs the signup binary with args and waits until it listens.
func startBinary(t testing.TB, args []string, env ...string) *process {
	t.Helper()
	p := startBinaryNoWait(t, args, env...)
	p.url = waitListening(t, p.logs, time.Minute) // a -race binary on a machine busy with two suites can take long to start
	return p
}

// startInstances starts the instances serving args on the engine's
// database: two on PostgreSQL, which share it, and on SQLite the one
// process a file has (then a and b are the same).
func startInstances(t testing.TB, engine string, args []string) (a, b *process) {
	t.Helper()
	a = startBinary(t, args)
	if engine == "postgres" {
		return a, startBinary(t, args)
	}
	return a, a
}

func startBinaryNoWait(t testing.TB, args []string, env ...string) *process {
	t.Helper()
	cmd := exec.Command(builtBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// builtBinary returns the path of the signup binary, building it once.
func builtBinary(t testing.TB) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startCmd starts cmd, a signup process, collecting its output.
func startCmd(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	args := cmd.Args
	p := &process{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("logs of %v:\n%s", args, p.logs)
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// signal sends sig to the process.
func (p *process) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}
