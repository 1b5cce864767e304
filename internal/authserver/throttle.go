package authserver

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// SignInLimits bound what a sign-in attempt can make the server do and
// how fast passwords can be guessed. Zero values take the defaults.
type SignInLimits struct {
	// MaxConcurrentHashes is how many password checks (argon2id, 64 MiB
	// each) run at once. Default 2.
	MaxConcurrentHashes int
	// MaxQueuedHashes is how many more sign-ins wait for a slot; beyond
	// that they are answered 503 at once. Default 8.
	MaxQueuedHashes int
	// HashQueueTimeout is how long a sign-in waits for a slot before it is
	// answered 503 "busy, try again". Default 5s.
	HashQueueTimeout time.Duration
	// FailuresBeforeDelay is how many wrong passwords one address may try
	// for one user name before each further try must wait. Default 3.
	FailuresBeforeDelay int
	// AddressFailuresBeforeDelay: the same for one address and any user
	// names (password spraying). Default 20.
	AddressFailuresBeforeDelay int
	// UserFailuresBeforeDelay: the same for one user name from any address
	// (distributed guessing); browsers that signed in as that user before
	// are exempt, so it slows an attacker but cannot lock the user out.
	// Default 20.
	UserFailuresBeforeDelay int
	// BaseDelay is the first wait; it doubles with each further failure up
	// to MaxDelay. Defaults 1s and 15m.
	BaseDelay, MaxDelay time.Duration
	// MaxTracked bounds the failure records kept in memory (oldest are
	// evicted first). Default 10000.
	MaxTracked int
}

func (l SignInLimits) withDefaults() SignInLimits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxConcurrentHashes, 2)
	def(&l.MaxQueuedHashes, 8)
	defD(&l.HashQueueTimeout, 5*time.Second)
	def(&l.FailuresBeforeDelay, 3)
	def(&l.AddressFailuresBeforeDelay, 20)
	def(&l.UserFailuresBeforeDelay, 20)
	defD(&l.BaseDelay, time.Second)
	defD(&l.MaxDelay, 15*time.Minute)
	def(&l.MaxTracked, 10000)
	return l
}

// throttle keeps failed sign-ins per key with exponential backoff. A key
// past its free failures must wait base·2^(n-free-1) (at most max) after
// its last failure before the next try is even checked; a try that comes
// too early is answered 429 without hashing anything.
//
// Keys (see signInKeys): the pair (user name, address) — or (user name,
// device) for a browser holding a device cookie for that user —, the
// address alone, and the user name alone. The last two are skipped for a
// browser with a device cookie for the name it signs in as: such a
// browser has proven the password before, so nobody else's failures slow
// it, and an attacker can throttle only the keys it fails on itself.
type throttle struct {
	mu       sync.Mutex
	entries  map[string]*backoff
	max      int
	base     time.Duration
	maxDelay time.Duration
	forget   time.Duration
}

type backoff struct {
	failures    int
	until, last time.Time
}

type throttleKey struct {
	key  string
	free int
}

func newThrottle(l SignInLimits) *throttle {
	forget := 4 * l.MaxDelay
	if forget < time.Hour {
		forget = time.Hour
	}
	return &throttle{entries: map[string]*backoff{}, max: l.MaxTracked, base: l.BaseDelay, maxDelay: l.MaxDelay, forget: forget}
}

// admit returns how long the caller must still wait (0: go ahead). When
// it goes ahead, the attempt is counted as a failure now — before the
// password is checked — so parallel tries cannot all slip through before
// the first failure is recorded; success or a busy answer undo it.
func (t *throttle) admit(now time.Time, keys []throttleKey) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		if e := t.entries[k.key]; e != nil && now.Sub(e.last) < t.forget && e.until.After(now) {
			wait = max(wait, e.until.Sub(now))
		}
	}
	if wait > 0 {
		return wait
	}
	for _, k := range keys {
		e := t.entries[k.key]
		if e == nil || now.Sub(e.last) >= t.forget {
			if e == nil {
				t.makeRoom(now)
			}
			e = &backoff{}
			t.entries[k.key] = e
		}
		e.failures++
		e.last = now
		if over := e.failures - k.free; over > 0 {
			d := t.maxDelay
			if over <= 30 {
				d = min(t.base<<(over-1), t.maxDelay)
			}
			e.until = now.Add(d)
		}
	}
	return 0
}

// refund takes back an attempt admit counted (it was never checked).
func (t *throttle) refund(keys []throttleKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if e := t.entries[k.key]; e != nil && e.failures > 0 {
			e.failures--
			if e.failures <= k.free {
				e.until = time.Time{}
			}
		}
	}
}

// clear forgets keys (a successful sign-in).
func (t *throttle) clear(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.entries, k)
	}
}

// makeRoom keeps the table under its bound: expired records go first,
// then the one whose last failure is oldest.
func (t *throttle) makeRoom(now time.Time) {
	if len(t.entries) < t.max {
		return
	}
	var oldest string
	var at time.Time
	for k, e := range t.entries {
		if now.Sub(e.last) >= t.forget || (e.until.Before(now) && e.failures == 0) {
			delete(t.entries, k)
			continue
		}
		if oldest == "" || e.last.Before(at) {
			oldest, at = k, e.last
		}
	}
	if len(t.entries) >= t.max && oldest != "" {
		delete(t.entries, oldest)
	}
}

func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// signInKeys are the throttle keys of one attempt: device is the id of a
// valid device cookie for user ("" when there is none).
func (s *Server) signInKeys(user, addr, device string) []throttleKey {
	l := s.cfg.SignIn
	if device != "" {
		return []throttleKey{{"d\x00" + user + "\x00" + device, l.FailuresBeforeDelay}}
	}
	return []throttleKey{
		{"u\x00" + user + "\x00" + addr, l.FailuresBeforeDelay},
		{"a\x00" + addr, l.AddressFailuresBeforeDelay},
		{"n\x00" + user, l.UserFailuresBeforeDelay},
	}
}

// clientAddr is the address sign-in throttling counts against: the peer,
// or the last address a trusted proxy added to X-Forwarded-For (as the
// gateway's own logs do). IPv6 addresses count per /64, the block one
// host usually has.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if s.trustedProxy(host) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h := strings.TrimSpace(hops[i])
			if h == "" {
				continue
			}
			host = h
			if !s.trustedProxy(h) {
				break
			}
		}
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

func (s *Server) trustedProxy(host string) bool {
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range s.proxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func parseProxies(list []string) []*net.IPNet {
	var out []*net.IPNet
	for _, p := range list {
		if !strings.Contains(p, "/") {
			if ip := net.ParseIP(p); ip != nil {
				bits := 32
				if ip.To4() == nil {
					bits = 128
				}
				p += "/" + map[int]string{32: "32", 128: "128"}[bits]
			}
		}
		if _, n, err := net.ParseCIDR(p); err == nil {
			out = append(out, n)
		}
	}
	return out
}
