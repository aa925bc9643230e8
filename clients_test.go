package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestConnectionCaps: connections past the per-client cap are closed at
// once while other clients are served; past the overall cap, the one that
// has waited the longest for a request makes room.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	p := startBinary(t, append(baseArgs(t.TempDir()), append(smtpArgs(srv.host, srv.port), "-host", "127.0.0.1", "-max-conns", "8", "-max-conns-per-client", "5")...))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server closed a new connection from
	// address from at once (it may be reset before Dial even returns).
	refused := func(from string) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	healthy := func(from string) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && res.StatusCode == 200
	}

	var idle []net.Conn
	for range 5 {
		idle = append(idle, dial("127.0.0.1"))
	}
	waitFor(t, 10*time.Second, "the idle connections to be accepted", func() bool {
		return series(t, scrapeFrom(t, p.url, "127.0.0.2"))["signup_connections_open"] == 6 // and this one
	})
	if !refused("127.0.0.1") {
		t.Error("a sixth connection from one address was kept open")
	}
	if !healthy("127.0.0.2") {
		t.Error("another client was not served while one address is at its cap")
	}
	// The healthcheck's connection gone, the five idle ones (and the
	// scrape's) remain: three more fill the overall cap.
	waitFor(t, 10*time.Second, "the healthcheck's connection to close", func() bool {
		return series(t, scrapeFrom(t, p.url, "127.0.0.2"))["signup_connections_open"] == 6
	})
	// The scrape's connection may still count, the server not having seen
	// it close yet: a connection refused for it is dialled again.
	for held, tries := 0, 0; held < 3; tries++ {
		if tries == 10 {
			t.Fatalf("only %d of 3 more connections held under the overall cap", held)
		}
		c := dial("127.0.0.3")
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetReadDeadline(time.Time{})
			idle = append(idle, c)
			held++
		}
	}
	// The cap is full of connections that have sent nothing: a new one
	// takes the place of the one that has waited the longest.
	if !healthy("127.0.0.4") {
		t.Error("a client past the overall cap, all of it silent connections, was not served")
	}
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection that waited the longest was not closed to make room: %v", err)
	}
	if m := series(t, scrapeFrom(t, p.url, "127.0.0.5")); m["signup_connections_refused_total"] < 1 {
		t.Errorf("metrics do not count the refused connections: %v", m["signup_connections_refused_total"])
	}
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) {
		cfg.limiterEnabled, cfg.limiterRPS, cfg.limiterBurst = true, 0.001, 2
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	get := func(forwarded string) int {
		req, _ := http.NewRequest("GET", app.url+"/v1/healthcheck", nil)
		if forwarded != "" {
			req.Header.Set("X-Forwarded-For", forwarded)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		return res.StatusCode
	}
	for i, want := range []int{200, 200, 429} {
		if got := get("203.0.113.7"); got != want {
			t.Errorf("request %d from 203.0.113.7: %d, want %d", i+1, got, want)
		}
	}
	// Another client behind the same trusted proxy has its own bucket; a
	// spoofed hop left of the real client is ignored.
	if got := get("198.51.100.1, 203.0.113.8"); got != 200 {
		t.Errorf("second client: %d, want 200", got)
	}
	if got := get("198.51.100.1, 203.0.113.8"); got != 200 {
		t.Errorf("second client, second request: %d, want 200", got)
	}
	if got := get("10.9.9.9, 203.0.113.8"); got != 429 {
		t.Errorf("second client with another spoofed hop: %d, want 429", got)
	}
	// IPv6 clients are counted by /64: another address in it shares the bucket.
	get("2001:db8:1:2::1")
	get("2001:db8:1:2::1")
	if got := get("2001:db8:1:2:ffff::9"); got != 429 {
		t.Errorf("another address in the same /64: %d, want 429", got)
	}
	if got := get("2001:db8:1:3::1"); got != 200 {
		t.Errorf("an address in another /64: %d, want 200", got)
	}
}

func TestClientAddrIgnoresForwardedFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	app := &application{cfg: config{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("X-Forwarded-For", "127.0.0.1")
	if got := app.clientAddr(r); got.String() != "192.0.2.1" {
		t.Errorf("untrusted peer: client %v, want 192.0.2.1", got)
	}
	r.RemoteAddr = "10.1.2.3:1234"
	if got := app.clientAddr(r); got.String() != "127.0.0.1" {
		t.Errorf("trusted proxy: client %v, want 127.0.0.1", got)
	}
	// An unparsable hop ends the walk with an unknown client, never the
	// (loopback) proxy: /metrics must not answer it.
	app = newTestApp(t, startSMTP(t, nil), func(cfg *config) {
		cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}).application
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, not-an-address")
	if got := app.clientAddr(r); got.IsValid() {
		t.Errorf("bad hop: client %v, want unknown", got)
	}
	r = httptest.NewRequest("GET", "/metrics", nil)
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "garbage")
	rec := httptest.NewRecorder()
	app.routes().ServeHTTP(rec, r)
	if rec.Code != http.StatusNotFound {
		t.Errorf("/metrics through a loopback proxy with a bad hop: %d, want 404", rec.Code)
	}
	// The proxy's own request, without X-Forwarded-For, is the proxy's.
	r.Header.Del("X-Forwarded-For")
	rec = httptest.NewRecorder()
	app.routes().ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Errorf("/metrics from the loopback proxy itself: %d, want 200", rec.Code)
	}
}
