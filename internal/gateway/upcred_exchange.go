package gateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
)

// TokenExchanger exchanges a caller's validated access token (RFC 8693
// subject_token) for a token for one upstream. cmd builds one per
// upstream_auth.token_exchange with internal/oauth (the gateway does not
// import the client side); the gateway caches what it returns. A refusal
// or failure is an *ExchangeError.
type TokenExchanger interface {
	Exchange(ctx context.Context, subjectToken string) (ExchangedToken, error)
}

// NewTokenExchanger builds the TokenExchanger of upstream's
// token_exchange configuration (Options.TokenExchangers).
type NewTokenExchanger func(upstream string, c *config.TokenExchange) (TokenExchanger, error)

// ExchangedToken is an issued token and when it expires (zero: the
// identity provider did not say).
type ExchangedToken struct {
	Value  string
	Expiry time.Time
}

// ExchangeError is a token exchange the identity provider refused (Code
// and Description: RFC 6749 §5.2 / RFC 8693 §2.2.2) or that failed
// (Status 0: no answer; Transient: network, 5xx, temporarily_unavailable).
type ExchangeError struct {
	Code, Description string
	Status            int
	Transient         bool
	Err               error
}

func (e *ExchangeError) Error() string {
	switch {
	case e.Code != "" && e.Description != "":
		return e.Code + " (" + e.Description + ")"
	case e.Code != "":
		return e.Code
	case e.Err != nil:
		return e.Err.Error()
	}
	return "HTTP " + strconv.Itoa(e.Status)
}

func (e *ExchangeError) Unwrap() error { return e.Err }

// callerRefusals are the token endpoint errors that say the caller may
// not have a token for this upstream (RFC 8693 §2.2.2 names
// invalid_request for an unacceptable subject token, invalid_target for
// an audience it will not serve; RFC 6749 §5.2 the rest): the client gets
// a 403 with the reason, not a gateway failure.
var callerRefusals = []string{"invalid_request", "invalid_grant", "invalid_target", "invalid_scope", "unauthorized_client", "access_denied"}

const (
	// exchangeTimeout bounds one exchange, whoever waits for it.
	exchangeTimeout = 30 * time.Second
	// refusalTTL is how long a refused exchange is answered from memory:
	// a client retrying a refused call does not make the gateway ask the
	// identity provider again each time.
	refusalTTL = 10 * time.Second
	// maxExchangeTTL is how long an exchanged token is kept when the
	// identity provider did not say when it expires (expires_in).
	maxExchangeTTL = 5 * time.Minute
	// renewSkew: an exchanged token is renewed this long before it
	// expires (a quarter of its lifetime for short-lived ones).
	renewSkew = 30 * time.Second
	// defaultExchangeEntries bounds the cache (token_exchange.cache_entries).
	defaultExchangeEntries = 10000
)

// exchangeSource is upstream_auth.token_exchange: it sends the upstream a
// token exchanged for the caller's, never the caller's own (MCP security
// best practices, "Token Passthrough").
type exchangeSource struct {
	upstream string
	x        TokenExchanger
	header   string // canonical
	scheme   string // "" sends the bare token
	cache    *exchangeCache
	now      func() time.Time
}

// newExchangeSource is the token_exchange source of u, or nil when u has
// none or it supplies a command upstream's children (child_env, then it
// is the mount's child credential: upcred_env.go).
func (m *mount) newExchangeSource(u config.Upstream) (credentialSource, error) {
	if u.UpstreamAuth == nil || u.UpstreamAuth.TokenExchange == nil {
		return nil, nil
	}
	c := u.UpstreamAuth.TokenExchange
	switch {
	case u.Transport == "stdio" && u.UpstreamAuth.ChildEnv == "":
		return nil, errors.New("upstream_auth.token_exchange on a command upstream needs upstream_auth.child_env: the environment variable of each session's child that receives the caller's exchanged token")
	case u.UpstreamAuth.Header != "" && http.CanonicalHeaderKey(u.UpstreamAuth.Header) == c.HeaderName():
		return nil, fmt.Errorf("upstream_auth.header and upstream_auth.token_exchange both set %s: the exchanged token would replace the static one; use another header for one of them", c.HeaderName())
	case m.g.opts.TokenExchangers == nil:
		return nil, errors.New("upstream_auth.token_exchange: this gateway was built without a token exchanger")
	}
	x, err := m.g.opts.TokenExchangers(u.Name, c)
	if err != nil {
		return nil, fmt.Errorf("upstream_auth.token_exchange: %w", err)
	}
	size := c.CacheEntries
	if size == 0 {
		size = defaultExchangeEntries
	}
	src := &exchangeSource{upstream: u.Name, x: x, header: c.HeaderName(), scheme: c.HeaderScheme(),
		cache: newExchangeCache(size), now: time.Now}
	if u.Transport == "stdio" {
		return nil, m.setChildCredential(u.UpstreamAuth.ChildEnv, src)
	}
	return src, nil
}

// errNoSubjectToken: a request reached the source without the caller's
// token and without being a verified hop (cannot happen after
// authenticate; refused, never sent without a credential).
var errNoSubjectToken = errors.New("the request carries no access token to exchange")

// addTo sets the exchanged token for the caller. A request another
// replica forwarded (a hop) carries no token: it is served by the
// upstream connection this replica holds (a stdio child or legacy SSE
// connection), which got its credential when a direct request of the
// caller opened it here, so nothing is exchanged and nothing is added
// (docs/upstream-identity.md, "Token exchange").
func (s *exchangeSource) addTo(ctx context.Context, c credCaller, h http.Header) error {
	v, err := s.envValue(ctx, c)
	if err != nil {
		if errors.Is(err, errHopKeepsChild) {
			return nil
		}
		return err
	}
	if s.scheme != "" {
		v = s.scheme + " " + v
	}
	h.Set(s.header, v)
	return nil
}

// envValue is the caller's exchanged token itself: for a child's
// environment, and for addTo. A hop has none (errHopKeepsChild).
func (s *exchangeSource) envValue(ctx context.Context, c credCaller) (string, error) {
	tok, ok := subjectToken(c.r)
	if !ok {
		if c.r.Header.Get(state.HeaderHop) != "" {
			return "", errHopKeepsChild
		}
		return "", errNoSubjectToken
	}
	return s.token(ctx, c.p, tok)
}

// subjectToken is the caller's access token from its Authorization
// header (Bearer or DPoP scheme), which authenticate verified.
func subjectToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || tok == "" || (!strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP")) {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// token returns the caller's exchanged token: cached per (issuer and
// subject, SHA-256 of the caller's token) until the earlier of both
// expiries, obtained once per key however many requests ask at once.
func (s *exchangeSource) token(ctx context.Context, p *resource.Principal, subject string) (string, error) {
	sum := sha256.Sum256([]byte(subject))
	key := owner(p) + "\x00" + string(sum[:])
	return s.cache.get(ctx, key, s.now(), func(ctx context.Context) (string, time.Time, error) {
		t, err := s.x.Exchange(ctx, subject)
		now := s.now()
		if err != nil {
			return "", now.Add(refusalTTL), err
		}
		return t.Value, s.until(p, t, now), nil
	})
}

// until is when a token exchanged for p stops being used: before it
// expires (renewSkew, or a quarter of its lifetime), and never after the
// caller's own token (the source token) expires.
func (s *exchangeSource) until(p *resource.Principal, t ExchangedToken, now time.Time) time.Time {
	until := now.Add(maxExchangeTTL)
	if !t.Expiry.IsZero() {
		until = t.Expiry.Add(-min(renewSkew, t.Expiry.Sub(now)/4))
	}
	if !p.Expiry.IsZero() {
		until = earliest(until, p.Expiry)
	}
	return until
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// refuseExchange answers a request whose token exchange failed; it
// reports whether err was one (refuseCredential). The identity
// provider's refusal is the caller's 403 with the reason; an identity
// provider that is busy is a 503 with Retry-After, one that failed or
// refused the gateway's own client a 502. The caller's own token is never
// sent instead.
func (x *exchange) refuseExchange(err error) bool {
	var xe *ExchangeError
	if !errors.As(err, &xe) {
		return false
	}
	up := x.m.name
	x.m.g.log.Warn("token exchange failed", "upstream", up, "request_id", x.id, "err", err)
	switch {
	case slices.Contains(callerRefusals, xe.Code):
		f := &failure{status: http.StatusForbidden, code: mcp.CodeFor(x.era(), mcp.CodeForbidden),
			msg: "forbidden: the identity provider refused to exchange your access token for upstream " + up + ": " + safeReason(xe)}
		x.refuse(decDeny, x.denied(f, x.method, "", "token_exchange_"+xe.Code))
	case xe.Transient && (xe.Status == http.StatusServiceUnavailable || xe.Status == http.StatusTooManyRequests || xe.Code == "temporarily_unavailable" || xe.Code == "slow_down"):
		x.w.Header().Set("Retry-After", "5")
		x.refuse(decBusy, &failure{status: http.StatusServiceUnavailable, code: mcp.CodeUnavailable,
			msg: "the identity provider that issues tokens for upstream " + up + " is busy: retry after 5s"})
	case xe.Code == "invalid_client":
		x.refuse(decError, &failure{status: http.StatusBadGateway, code: mcp.CodeUpstream,
			msg: "the identity provider refused the gateway's own client for upstream " + up + " (invalid_client): the operator must fix upstream_auth.token_exchange"})
	default:
		x.refuse(decError, &failure{status: http.StatusBadGateway, code: mcp.CodeUpstream,
			msg: "no token for upstream " + up + ": the token exchange failed (" + safeReason(xe) + ")"})
	}
	return true
}

// safeReason is the identity provider's reason as the client is told it:
// printable ASCII, at most 200 bytes (server-chosen text).
func safeReason(e *ExchangeError) string {
	s := e.Error()
	b := make([]byte, 0, min(len(s), 200))
	for i := 0; i < len(s) && len(b) < 200; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// exchangeCache keeps exchanged tokens by key, at most max, least
// recently used evicted first; refusals are kept too (until refusalTTL),
// so a retried refused call is answered without the identity provider.
// It is per replica: an entry is derived again from the caller's token on
// any replica, and upstream tokens never go to shared state.
type exchangeCache struct {
	max     int
	mu      sync.Mutex // guards entries, order, pending
	entries map[string]*list.Element
	order   *list.List // of *cachedExchange, most recently used first
	pending map[string]*exchangeFlight
}

type cachedExchange struct {
	key, value string
	err        error
	until      time.Time
}

// exchangeFlight is one exchange in progress; done is closed when value,
// until and err are set.
type exchangeFlight struct {
	done  chan struct{}
	value string
	err   error
}

func newExchangeCache(max int) *exchangeCache {
	return &exchangeCache{max: max, entries: map[string]*list.Element{}, order: list.New(), pending: map[string]*exchangeFlight{}}
}

// get returns the entry of key valid at now, or runs fetch once for all
// callers asking for key meanwhile. fetch runs detached from the first
// caller's cancellation (others may wait for it), within exchangeTimeout.
func (c *exchangeCache) get(ctx context.Context, key string, now time.Time, fetch func(context.Context) (string, time.Time, error)) (string, error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cachedExchange)
		if now.Before(e.until) {
			c.order.MoveToFront(el)
			c.mu.Unlock()
			return e.value, e.err
		}
		c.order.Remove(el)
		delete(c.entries, key)
	}
	f, waiting := c.pending[key]
	if !waiting {
		f = &exchangeFlight{done: make(chan struct{})}
		c.pending[key] = f
	}
	c.mu.Unlock()
	if waiting {
		select {
		case <-f.done:
			return f.value, f.err
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exchangeTimeout)
	defer cancel()
	v, until, err := fetch(fctx)
	c.finish(key, f, v, until, err, now)
	return v, err
}

// finish records the outcome of f and wakes its waiters. Transient
// failures are not kept: the next request tries again.
func (c *exchangeCache) finish(key string, f *exchangeFlight, v string, until time.Time, err error, now time.Time) {
	f.value, f.err = v, err
	var xe *ExchangeError
	keep := until.After(now) && (err == nil || errors.As(err, &xe) && !xe.Transient)
	c.mu.Lock()
	delete(c.pending, key)
	if keep {
		c.entries[key] = c.order.PushFront(&cachedExchange{key: key, value: v, err: err, until: until})
		for c.order.Len() > c.max {
			old := c.order.Remove(c.order.Back()).(*cachedExchange)
			delete(c.entries, old.key)
		}
	}
	c.mu.Unlock()
	close(f.done)
}

// len is the number of kept entries (tests).
func (c *exchangeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
