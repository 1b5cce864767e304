package authserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuthorizeLimits bound what /authorize and /par — which anyone can call
// with a self-registered client — make the server store. Every request
// that would store something is counted against its address and all
// addresses together; what is stored is only the known parameters, each
// bounded; and the pending requests are capped, counted and inserted
// atomically in the store. A zero field takes its default.
type AuthorizeLimits struct {
	// MaxPendingFlows: authorization requests in progress (between
	// /authorize and the code; each kept 15 min) at once. Default 10000.
	MaxPendingFlows int
	// MaxPushedRequests: pushed authorization requests (RFC 9126, each
	// kept 90 s until used) at once. Default 5000.
	MaxPushedRequests int
	// PerAddressPerMinute: requests to /authorize, and separately to /par,
	// per client address (IPv6: per /64; behind trusted proxies the
	// forwarded address) in any minute. Default 60.
	PerAddressPerMinute int
	// PerMinute: the same from all addresses together. Default 6000.
	PerMinute int
}

// Bounds of the authorization request parameters that are stored or
// echoed. Longer values are refused.
const (
	maxStateBytes     = 1024 // state, echoed to the client
	maxNonceBytes     = 256
	maxChallengeBytes = 128  // RFC 7636: at most 128 characters
	maxScopeBytes2    = 1024 // scope parameter
	maxResourceBytes  = 1024
	maxJKTBytes       = 128
	pendingFlowTTL    = 15 * time.Minute
	pushedRequestTTL  = 90 * time.Second
)

func (l *AuthorizeLimits) applyDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxPendingFlows, 10000)
	def(&l.MaxPushedRequests, 5000)
	def(&l.PerAddressPerMinute, 60)
	def(&l.PerMinute, 6000)
}

// authorizeGuard holds the rate limits of /authorize and /par.
type authorizeGuard struct {
	limits    AuthorizeLimits
	authorize *registrationLimiter
	par       *registrationLimiter
	logs      *logLimiter
}

func newAuthorizeGuard(l AuthorizeLimits) *authorizeGuard {
	l.applyDefaults()
	lim := func() *registrationLimiter {
		return &registrationLimiter{perAddr: l.PerAddressPerMinute, total: l.PerMinute, window: time.Minute, byAddr: map[string][]time.Time{}}
	}
	return &authorizeGuard{limits: l, authorize: lim(), par: lim(), logs: newLogLimiter(time.Minute)}
}

// authorizeParams are the parameters an authorization request is made
// of; a pushed request keeps these (first value each) and nothing else.
var authorizeParams = []string{"client_id", "response_type", "redirect_uri", "scope", "state", "code_challenge",
	"code_challenge_method", "resource", "dpop_jkt", "nonce"}

func knownParams(p url.Values) url.Values {
	out := url.Values{}
	for _, k := range authorizeParams {
		if v := p.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

// paramTooLong names the first bounded parameter that is too long ("" if
// none). state is checked separately: it cannot be echoed in an error.
func paramTooLong(p url.Values) string {
	for k, n := range map[string]int{"nonce": maxNonceBytes, "code_challenge": maxChallengeBytes, "scope": maxScopeBytes2,
		"resource": maxResourceBytes, "dpop_jkt": maxJKTBytes} {
		if len(p.Get(k)) > n {
			return k + " is longer than " + strconv.Itoa(n) + " bytes"
		}
	}
	return ""
}

// admitStore counts a request that may store something against its
// address; false: it was answered (429) and must stop.
func (s *Server) admitStore(w http.ResponseWriter, r *http.Request, which string) bool {
	lim := s.flows.authorize
	if which == "par" {
		lim = s.flows.par
	}
	if _, wait := lim.reserve(s.clientAddr(r), s.now()); wait > 0 {
		w.Header().Set("Retry-After", retryAfter(wait))
		if ok, held := s.flows.logs.allow(which+"-rate", s.now()); ok {
			s.cfg.Log.Warn("authorization requests refused: rate limit", "endpoint", "/"+which, "remote", s.clientAddr(r), "not_logged_before", held)
		}
		if which == "par" {
			oauthError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many pushed authorization requests from this address; retry after "+w.Header().Get("Retry-After")+" s")
		} else {
			errorPage(w, http.StatusTooManyRequests, "Too many requests", "Too many sign-in requests came from your network in the last minute. Wait "+w.Header().Get("Retry-After")+" seconds, then start again from the application.")
		}
		return false
	}
	return true
}

// storeFlow keeps a flow under the pending-flow cap; false: answered.
func (s *Server) storeFlow(w http.ResponseWriter, id string, f *flow) bool {
	raw, _ := json.Marshal(f)
	stored, err := putCapped(s.cfg.Store, "flows", id, raw, pendingFlowTTL, s.flows.limits.MaxPendingFlows)
	if err != nil {
		errorPage(w, http.StatusInternalServerError, "Server error", "The request could not be stored.")
		return false
	}
	if !stored {
		s.capLog("flows")
		w.Header().Set("Retry-After", "60")
		errorPage(w, http.StatusServiceUnavailable, "Busy", "Too many sign-ins are in progress on this server. Wait a minute, then start again from the application.")
		return false
	}
	return true
}

// storePushed keeps a pushed request (its known parameters only) under
// the cap; false: answered.
func (s *Server) storePushed(w http.ResponseWriter, uri string, p url.Values) bool {
	raw, _ := json.Marshal(knownParams(p))
	stored, err := putCapped(s.cfg.Store, "par", uri, raw, pushedRequestTTL, s.flows.limits.MaxPushedRequests)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "storing the request failed")
		return false
	}
	if !stored {
		s.capLog("par")
		w.Header().Set("Retry-After", "30")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many pushed authorization requests are pending; retry later")
		return false
	}
	return true
}

func (s *Server) capLog(bucket string) {
	if ok, held := s.flows.logs.allow(bucket+"-cap", s.now()); ok {
		s.cfg.Log.Warn("authorization requests refused: too many pending", "bucket", bucket, "not_logged_before", held)
	}
}
