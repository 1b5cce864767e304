package authserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"net/http"
	"slices"
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
	// UserFailuresBeforeDelay: failures for one user name from any
	// address beyond which a distributed guessing attack is logged (at 1,
	// 2, 4, … failures more). It never makes anyone wait: that would let
	// an attacker lock the user out. Default 20.
	UserFailuresBeforeDelay int
	// BaseDelay is the first wait; it doubles with each further failure up
	// to MaxDelay. Defaults 1s and 15m.
	BaseDelay, MaxDelay time.Duration
	// MaxTracked bounds the failure records kept in memory (about 100
	// bytes each, whatever the name); records still backing off are never
	// evicted (see throttle). Default 10000.
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
// Keys (see signInKeys) are keyed hashes (16 bytes) of the normalised
// user name and the address, so a record costs the same whatever name is
// submitted: the pair (user name, address) — or (user name, device) for a
// browser holding a device cookie for that user —, the address alone, and
// the user name alone. The user-name key is advisory: it is counted and
// logged (distributed guessing), but never makes anyone wait, since
// everybody shares it, the real user included; an attacker could
// otherwise keep it in backoff and lock the user out of every new
// browser. Guessing one name is bounded by the pair and address keys:
// addresses × the pair's budget.
//
// The table is bounded (MaxTracked). A record that is backing off is
// never evicted for room; when the table holds nothing else, attempts
// whose records do not fit share one overflow bucket with a strict global
// rate (overflowEvery, overflowBurst): fail closed, but not for ever —
// records stop backing off by themselves.
type throttle struct {
	mu       sync.Mutex // guards entries, noRoomUntil and the overflow bucket
	entries  map[string]*backoff
	max      int
	base     time.Duration
	maxDelay time.Duration
	forget   time.Duration
	secret   []byte // HMAC key of the record keys (per process)
	logs     *logLimiter

	// noRoomUntil: a full scan found nothing evictable; nothing can become
	// evictable before this time (unless refund or clear frees records).
	noRoomUntil time.Time
	// overflow bucket: tokens at overflowAt
	overflowTokens float64
	overflowAt     time.Time
}

const (
	overflowEvery = time.Second
	overflowBurst = 5
)

type backoff struct {
	failures, free int
	advisory       bool
	until, last    time.Time
	// logged is the until of the backoff window whose first refusal was
	// logged; suppressed counts refusals not logged since.
	logged     time.Time
	suppressed int
}

type throttleKey struct {
	key      string
	free     int
	advisory bool // counted and logged, never waited for
}

// verdict is admit's answer: how long to wait (0: go ahead), and whether
// to log the refusal (at most once per key and backoff window; Suppressed
// is how many refusals of that key were not logged before).
type verdict struct {
	Wait       time.Duration
	Log        bool
	Suppressed int
	Overflow   bool // the refusal came from the shared overflow bucket
	// Alert: an advisory key crossed a power of two of failures beyond its
	// free count (logged: many failures for one name from many places).
	Alert         bool
	AlertFailures int
}

func newThrottle(l SignInLimits) *throttle {
	forget := 4 * l.MaxDelay
	if forget < time.Hour {
		forget = time.Hour
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return &throttle{entries: map[string]*backoff{}, max: l.MaxTracked, base: l.BaseDelay, maxDelay: l.MaxDelay, forget: forget,
		secret: secret, overflowTokens: overflowBurst, logs: newLogLimiter(time.Minute)}
}

// key is the fixed-size record key of one throttled thing.
func (t *throttle) key(kind string, parts ...string) string {
	h := hmac.New(sha256.New, t.secret)
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return string(h.Sum(nil)[:16])
}

func (t *throttle) live(e *backoff, now time.Time) bool {
	return e != nil && now.Sub(e.last) < t.forget
}

// admit says how long the caller must still wait (0: go ahead). When it
// goes ahead, the attempt is counted as a failure now — before the
// password is checked — so parallel tries cannot all slip through before
// the first failure is recorded; success or a busy answer undo it.
func (t *throttle) admit(now time.Time, keys []throttleKey) verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	var v verdict
	var blocking *backoff
	missing := 0
	for _, k := range keys {
		e := t.entries[k.key]
		if !t.live(e, now) {
			if e == nil {
				missing++
			}
			continue
		}
		if !e.advisory && e.until.After(now) && e.until.Sub(now) > v.Wait {
			v.Wait, blocking = e.until.Sub(now), e
		}
	}
	if blocking != nil {
		if !blocking.logged.Equal(blocking.until) {
			v.Log, v.Suppressed = true, blocking.suppressed
			blocking.logged, blocking.suppressed = blocking.until, 0
		} else {
			blocking.suppressed++
		}
		return v
	}
	track := missing == 0 || t.room(now, missing)
	if !track {
		// the table is full of records still backing off: this attempt's
		// new records cannot be kept, so it goes through the shared bucket
		t.overflowTokens = min(overflowBurst, t.overflowTokens+float64(now.Sub(t.overflowAt))/float64(overflowEvery))
		t.overflowAt = now
		if t.overflowTokens < 1 {
			v.Wait = time.Duration((1 - t.overflowTokens) * float64(overflowEvery))
			v.Overflow = true
			return v
		}
		t.overflowTokens--
	}
	for _, k := range keys {
		e := t.entries[k.key]
		if !t.live(e, now) {
			if e == nil && !track {
				continue
			}
			e = &backoff{free: k.free, advisory: k.advisory}
			t.entries[k.key] = e
		}
		e.failures++
		e.last = now
		over := e.failures - k.free
		if over <= 0 {
			continue
		}
		if k.advisory {
			if over&(over-1) == 0 {
				v.Alert, v.AlertFailures = true, e.failures
			}
			continue
		}
		d := t.maxDelay
		if over <= 30 {
			d = min(t.base<<(over-1), t.maxDelay)
		}
		e.until = now.Add(d)
	}
	return v
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
	t.noRoomUntil = time.Time{}
}

// clear forgets keys (a successful sign-in).
func (t *throttle) clear(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.entries, k)
	}
	t.noRoomUntil = time.Time{}
}

// room makes space for need new records and reports whether there is.
// Forgotten records go first; then, of the records not backing off
// (advisory ones, those still within their free failures, those whose
// wait is over), those that matter least: advisory before counted, fewer
// failures beyond the free ones before more, older before newer. A
// sixteenth of the table is freed at once, so that a flood does not scan
// the table for every attempt. Records backing off are never evicted.
func (t *throttle) room(now time.Time, need int) bool {
	if len(t.entries)+need <= t.max {
		return true
	}
	if now.Before(t.noRoomUntil) {
		return false
	}
	type cand struct {
		key      string
		advisory bool
		over     int
		last     time.Time
	}
	var cands []cand
	next := now.Add(t.forget)
	for k, e := range t.entries {
		switch {
		case !t.live(e, now):
			delete(t.entries, k)
		case e.advisory || !e.until.After(now):
			cands = append(cands, cand{k, e.advisory, e.failures - e.free, e.last})
		default:
			next = minTime(next, minTime(e.until, e.last.Add(t.forget)))
		}
	}
	if excess := len(t.entries) + need - t.max; excess > 0 {
		slices.SortFunc(cands, func(a, b cand) int {
			switch {
			case a.advisory != b.advisory:
				if a.advisory {
					return -1
				}
				return 1
			case a.over != b.over:
				return a.over - b.over
			}
			return a.last.Compare(b.last)
		})
		n := min(len(cands), max(excess, t.max/16))
		for _, c := range cands[:n] {
			delete(t.entries, c.key)
		}
	}
	if len(t.entries)+need <= t.max {
		return true
	}
	t.noRoomUntil = next
	return false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// normalName is the user name as throttling counts it: names differing
// only in case or surrounding space share their records.
func normalName(user string) string {
	return strings.ToLower(strings.TrimSpace(user))
}

// signInKeys are the throttle keys of one attempt: device is the id of a
// valid device cookie for user ("" when there is none). The caller has
// refused names longer than maxLoginName already.
func (s *Server) signInKeys(user, addr, device string) []throttleKey {
	l := s.cfg.SignIn
	n := normalName(user)
	if device != "" {
		return []throttleKey{{key: s.throttle.key("d", n, device), free: l.FailuresBeforeDelay}}
	}
	return []throttleKey{
		{key: s.throttle.key("u", n, addr), free: l.FailuresBeforeDelay},
		{key: s.throttle.key("a", addr), free: l.AddressFailuresBeforeDelay},
		{key: s.throttle.key("n", n), free: l.UserFailuresBeforeDelay, advisory: true},
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
