package main

// clients.go holds what the service knows of its clients: their address
// (behind trusted proxies; an IPv6 client is its /64), the rate limit per
// client, and the caps on open connections.

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// capListener caps the connections open at once, overall and per client
// address, so that idle connections from one address can neither exhaust
// file descriptors and memory nor starve other clients. At the overall
// cap, the connection that has waited the longest — idle between requests,
// or not yet sending its first one — is closed to make room, so that
// silent connections from many addresses cannot lock everyone out either;
// a connection past its client's cap, or past the overall one with none
// waiting, is reset at once.
type capListener struct {
	net.Listener
	max, perClient int
	exempt         func(netip.Addr) bool // trusted proxies carry many clients
	metrics        *metrics

	mu    sync.Mutex
	total int
	open  map[netip.Addr]int
	idle  map[*cappedConn]time.Time // connections waiting for a request (new, or kept alive between requests), since when
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var addr netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			addr = ap.Addr().Unmap()
		}
		key := clientKey(addr)
		l.mu.Lock()
		ok := l.open[key] < l.perClient || l.exempt(addr)
		var evict *cappedConn
		if ok && l.total >= l.max {
			evict = l.longestWaiting()
			ok = evict != nil
		}
		if ok {
			l.total++
			l.open[key]++
			l.metrics.connsOpen.Set(float64(l.total))
		}
		l.mu.Unlock()
		if evict != nil {
			evict.Close() // its place is the new connection's
		}
		if ok {
			return &cappedConn{Conn: c, release: sync.OnceFunc(func() { l.release(key) })}, nil
		}
		l.metrics.connsRefused.Inc()
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			tc.SetLinger(0) // a reset: nothing lingers in TIME_WAIT
		}
		c.Close()
	}
}

// longestWaiting takes, from the connections waiting for a request, the
// one that has waited the longest, or returns nil when none is. The caller
// holds l.mu.
func (l *capListener) longestWaiting() *cappedConn {
	var oldest *cappedConn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	return oldest
}

// track follows the http.Server's connection states: which connections are
// waiting for a request — accepted and silent, or idle between requests —
// and since when.
func (l *capListener) track(c net.Conn, state http.ConnState) {
	cc, ok := c.(*cappedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateNew || state == http.StateIdle {
		l.idle[cc] = time.Now()
	} else {
		delete(l.idle, cc)
	}
}

func (l *capListener) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	l.metrics.connsOpen.Set(float64(l.total))
	if l.open[key]--; l.open[key] == 0 {
		delete(l.open, key)
	}
}

// cappedConn gives its place back when closed.
type cappedConn struct {
	net.Conn
	release func()
}

func (c *cappedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// clientKey is the address a client is counted by: itself, or for IPv6 its
// /64, since one subscriber commonly holds a whole /64.
func clientKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

// limiter holds two token buckets per client address: its requests, and
// the emails it may cause in an hour. It forgets a client idle for a few
// minutes once its email bucket is full again.
type limiter struct {
	rps       rate.Limit
	burst     int
	emails    int // per hour
	mu        sync.Mutex
	clients   map[netip.Addr]*client
	lastSweep time.Time
}

type client struct {
	limiter  *rate.Limiter
	emails   *rate.Limiter
	lastSeen time.Time
}

func newLimiter(rps rate.Limit, burst, emailsPerHour int) *limiter {
	return &limiter{rps: rps, burst: burst, emails: emailsPerHour, clients: make(map[netip.Addr]*client), lastSweep: time.Now()}
}

// client returns addr's buckets, sweeping idle clients now and then. The
// caller holds l.mu.
func (l *limiter) client(addr netip.Addr, now time.Time) *client {
	if now.Sub(l.lastSweep) > time.Minute {
		for a, c := range l.clients {
			if now.Sub(c.lastSeen) > 3*time.Minute && c.emails.TokensAt(now) >= float64(l.emails) {
				delete(l.clients, a)
			}
		}
		l.lastSweep = now
	}
	c, ok := l.clients[addr]
	if !ok {
		c = &client{limiter: rate.NewLimiter(l.rps, l.burst), emails: rate.NewLimiter(rate.Limit(float64(l.emails)/3600), l.emails)}
		l.clients[addr] = c
	}
	c.lastSeen = now
	return c
}

// allow takes a token from addr's request bucket.
func (l *limiter) allow(addr netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client(addr, now).limiter.AllowN(now, 1)
}

// reserveEmail takes a token from addr's email bucket, reporting whether
// there was one; cancel gives it back, for a request that sent nothing.
func (l *limiter) reserveEmail(addr netip.Addr, now time.Time) (cancel func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.client(addr, now).emails.ReserveN(now, 1)
	if !r.OK() || r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return func() {}, false
	}
	return func() { r.CancelAt(time.Now()) }, true
}

// clientCtxKey holds, in a request's context, the client address the
// limiter counted it by.
type clientCtxKey struct{}

// reserveEmail takes one of the emails the request's client may cause in
// an hour, as reserveEmail above; without the limiter (or outside a
// request) every email is allowed.
func (app *application) reserveEmail(ctx context.Context) (cancel func(), ok bool) {
	addr, found := ctx.Value(clientCtxKey{}).(netip.Addr)
	if app.limiter == nil || !found {
		return func() {}, true
	}
	return app.limiter.reserveEmail(addr, time.Now())
}

// rateLimit answers 429 to a client over its rate: JSON on the API, a
// page on the pages.
func (app *application) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Static files do not count: a page view is one request, not three;
		// nor does forward auth: a proxy asks on every request to the app.
		if app.limiter == nil || strings.HasPrefix(r.URL.Path, "/static/") || r.URL.Path == "/favicon.ico" || r.URL.Path == "/v1/forward-auth" {
			next.ServeHTTP(w, r)
			return
		}
		key := clientKey(app.clientAddr(r))
		if !app.limiter.allow(key, time.Now()) {
			w.Header().Set("Retry-After", "1")
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				app.errorResponse(w, r, http.StatusTooManyRequests, "rate limit exceeded")
			} else {
				app.showMessage(w, r, http.StatusTooManyRequests, "slowdown.title", "slowdown.text")
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientCtxKey{}, key)))
	})
}

// clientAddr is the address of the client: the peer, or, when the peer is
// a trusted proxy, the right-most X-Forwarded-For address that is not one.
// A hop that does not parse ends the walk: the client is then unknown (the
// zero Addr), never the proxy itself, which may be loopback.
func (app *application) clientAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !app.trusted(addr) {
		return addr
	}
	forwarded := r.Header.Values("X-Forwarded-For")
	if len(forwarded) == 0 {
		return addr // the proxy's own request
	}
	hops := strings.Split(strings.Join(forwarded, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}
		}
		addr = hop.Unmap()
		if !app.trusted(addr) {
			break
		}
	}
	return addr
}

func (app *application) trusted(addr netip.Addr) bool {
	for _, p := range app.cfg.trustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
