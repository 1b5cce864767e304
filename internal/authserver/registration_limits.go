package authserver

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// RegistrationLimits bound Dynamic Client Registration (RFC 7591), which
// anyone can reach with open registration: how often, how large, how many
// and for how long. A zero field takes its default.
type RegistrationLimits struct {
	// PerAddressPerHour: registrations per client address (IPv6: per
	// /64) in any hour. Default 10.
	PerAddressPerHour int
	// PerHour: registrations from all addresses together in any hour.
	// Default 100.
	PerHour int
	// MaxClients: dynamically registered clients kept at once (checked
	// atomically in the store). Default 5000.
	MaxClients int
	// UnusedClientTTL: a registered client that completes no grant in
	// this time is deleted; one that does is kept. Default 24h.
	UnusedClientTTL time.Duration
	// MaxBodyBytes: the registration request body. Default 16 KiB.
	MaxBodyBytes int
	// MaxNameChars: client_name, in characters. Default 100.
	MaxNameChars int
	// MaxURIBytes: each URI (redirect_uris, client_uri, logo_uri, …).
	// Default 1024.
	MaxURIBytes int
	// MaxRedirectURIs: entries of redirect_uris. Default 10.
	MaxRedirectURIs int
}

// maxScopeBytes bounds the registered scope string; maxContactCount and
// maxShortField the other metadata fields that are kept or echoed.
const (
	maxScopeBytes   = 1024
	maxShortField   = 256
	maxContactCount = 5
)

func (l *RegistrationLimits) applyDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.PerAddressPerHour, 10)
	def(&l.PerHour, 100)
	def(&l.MaxClients, 5000)
	def(&l.MaxBodyBytes, 16<<10)
	def(&l.MaxNameChars, 100)
	def(&l.MaxURIBytes, 1024)
	def(&l.MaxRedirectURIs, 10)
	if l.UnusedClientTTL <= 0 {
		l.UnusedClientTTL = 24 * time.Hour
	}
}

// registrationLimiter counts registrations per address and in total over
// a sliding hour. A slot is reserved before the registration is checked
// and given back if it fails, so concurrent requests cannot overshoot.
type registrationLimiter struct {
	mu       sync.Mutex // guards byAddr, all and lastTrim
	perAddr  int
	total    int
	window   time.Duration
	byAddr   map[string][]time.Time
	all      []time.Time
	lastTrim time.Time
}

func newRegistrationLimiter(l RegistrationLimits) *registrationLimiter {
	return &registrationLimiter{perAddr: l.PerAddressPerHour, total: l.PerHour, window: time.Hour, byAddr: map[string][]time.Time{}}
}

func keepSince(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(since) {
		i++
	}
	return ts[i:]
}

// reserve takes a slot for addr at now; it returns the time to wait when
// a limit is reached, and a release function to call if the registration
// did not happen.
func (l *registrationLimiter) reserve(addr string, now time.Time) (release func(), wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	since := now.Add(-l.window)
	l.all = keepSince(l.all, since)
	if now.Sub(l.lastTrim) > time.Minute { // forget quiet addresses
		for a, ts := range l.byAddr {
			if ts = keepSince(ts, since); len(ts) == 0 {
				delete(l.byAddr, a)
			} else {
				l.byAddr[a] = ts
			}
		}
		l.lastTrim = now
	}
	mine := keepSince(l.byAddr[addr], since)
	switch {
	case len(l.all) >= l.total:
		return nil, l.all[0].Add(l.window).Sub(now)
	case len(mine) >= l.perAddr:
		l.byAddr[addr] = mine
		return nil, mine[0].Add(l.window).Sub(now)
	}
	l.all = append(l.all, now)
	l.byAddr[addr] = append(mine, now)
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		drop := func(ts []time.Time) []time.Time {
			for i := len(ts) - 1; i >= 0; i-- {
				if ts[i].Equal(now) {
					return append(ts[:i:i], ts[i+1:]...)
				}
			}
			return ts
		}
		l.all = drop(l.all)
		if ts := drop(l.byAddr[addr]); len(ts) == 0 {
			delete(l.byAddr, addr)
		} else {
			l.byAddr[addr] = ts
		}
	}, 0
}

// registrationAddress is the peer address a registration is counted
// under; IPv6 addresses count per /64, which one host usually holds whole.
func registrationAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// retryAfter formats a wait for the Retry-After header (whole seconds,
// at least 1).
func retryAfter(d time.Duration) string {
	s := int(d/time.Second) + 1
	return strconv.Itoa(s)
}

// metadataError is a registration field that is refused: the answer is
// invalid_client_metadata (or invalid_redirect_uri) naming the field.
type metadataError struct {
	code, field, msg string
}

func (e *metadataError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) *metadataError {
	return &metadataError{code: "invalid_client_metadata", field: field, msg: fmt.Sprintf(format, args...)}
}

// checkText refuses text that a page or a log could show differently from
// what it is: invalid UTF-8, control characters (C0, DEL, C1) and
// formatting characters (Unicode Cf: bidi overrides and isolates, zero
// width joiners and spaces, the BOM, …); and text longer than max
// characters.
func checkText(field, s string, max int) *metadataError {
	if !utf8.ValidString(s) {
		return badField(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return badField(field, "is %d characters long; at most %d are accepted", n, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return badField(field, "contains the control or formatting character U+%04X", r)
		}
	}
	return nil
}

// checkURI bounds one URI-valued field; the syntax is checked where the
// field is used.
func checkURI(field, s string, max int) *metadataError {
	if len(s) > max {
		return badField(field, "is %d bytes long; at most %d are accepted", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return badField(field, "contains a space, control or non-ASCII byte (percent-encode it)")
		}
	}
	return nil
}
