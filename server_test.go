package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// doNoFatal is do for use from other goroutines: it reports instead of failing.
func doNoFatal(method, url, body string) (int, map[string]any) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(dir), smtpArgs(srv.host, srv.port)...), "NOTIFY_SOCKET="+sock)
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	// READY=1 came once the listener accepts: a request now is answered.
	if res, err := http.Get(p.url + "/v1/healthcheck"); err != nil || res.StatusCode != 200 {
		t.Errorf("healthcheck after READY=1: %v %v", res, err)
	}
	p.signal(t, syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", got)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestSocketActivationRestart restarts the service on a socket it inherits,
// as systemd does with socket activation (stop, then start; the socket
// queues connections meanwhile), while clients keep signing up: no request
// may be refused or lost, and every signup gets its email.
func TestSocketActivationRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	url := "http://" + ln.Addr().String()

	srv := startSMTP(t, nil)
	args := append(baseArgs(dir), smtpArgs(srv.host, srv.port)...)
	start := func() *process {
		cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, builtBinary(t)}, args...)...)
		cmd.ExtraFiles = []*os.File{lnFile} // fd 3
		p := startCmd(t, cmd)
		waitFor(t, 20*time.Second, "the server to start", func() bool { return strings.Contains(p.logs.String(), "starting server") })
		return p
	}

	var (
		mu       sync.Mutex
		accepted []string
		failures []string
		sent     atomic.Int64
	)
	stop := make(chan struct{})
	var clients sync.WaitGroup
	stopClients := sync.OnceFunc(func() {
		close(stop)
		clients.Wait()
	})
	t.Cleanup(stopClients) // no client outlives the test, whatever fails
	for c := range 4 {
		clients.Go(func() {
			// A new connection per signup: this is about connections that
			// queue on the shared socket. (A request racing with the close
			// of an idle keep-alive connection is the client's to retry.)
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				address := fmt.Sprintf("restart%d-%d@example.com", c, i)
				body := fmt.Sprintf(`{"name": "R", "email": %q, "password": "pa55word"}`, address)
				res, err := client.Post(url+"/v1/users", "application/json", strings.NewReader(body))
				sent.Add(1)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s: %v", address, err))
				case res.StatusCode != 202:
					failures = append(failures, fmt.Sprintf("%s: status %d", address, res.StatusCode))
				default:
					accepted = append(accepted, address)
				}
				mu.Unlock()
				if err == nil {
					res.Body.Close()
				}
			}
		})
	}

	p := start()
	for range 3 {
		before := sent.Load()
		waitFor(t, 20*time.Second, "traffic", func() bool { return sent.Load() > before+20 })
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("old process exit %d", code)
		}
		p = start()
	}
	before := sent.Load()
	waitFor(t, 20*time.Second, "traffic", func() bool { return sent.Load() > before+20 })
	stopClients()
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("last process exit %d", code)
	}

	for _, f := range failures {
		t.Error(f)
	}
	// What a stop left pending (no session had claimed it when the wait
	// for background tasks began) goes out from the next start; after the
	// last stop, that is one more.
	p = start()
	waitFor(t, 20*time.Second, "every accepted signup emailed", func() bool { return len(notEmailed(srv, accepted)) == 0 })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("the next start: exit %d", code)
	}
	for _, address := range notEmailed(srv, accepted) {
		t.Errorf("%s accepted but not emailed", address)
	}
	t.Logf("%d signups over 3 restarts, %d refused or lost", len(accepted), len(failures))
}
