package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// identityAssertions is upstream_auth.identity_assertion: each request
// goes upstream with a short-lived JWT the gateway signs (ES256, typ
// mcpgate-identity+jwt, the keys of assertkeys.go) stating who the
// verified caller is. Every claim comes from the gateway's configuration
// or from the verified access token (the resource.Principal); nothing the
// client sends besides that token reaches a claim, and a client-sent header
// of the assertion's name is stripped like the identity headers.
type identityAssertions struct {
	keys     *assertionKeys
	issuer   string // the gateway's public URL
	audience string
	header   string
	bearer   bool // the header is Authorization: "Bearer <jwt>"
	ttl      time.Duration
	now      func() time.Time
	cache    *assertionCache // nil in per_request mode
}

// ErrAssertionLegacy refuses a 2024-11-05 HTTP+SSE stream on an upstream
// with identity assertions: its upstream connection would outlive them.
var ErrAssertionLegacy = errors.New("identity_assertion: a 2024-11-05 HTTP+SSE client's connection outlives a signed identity assertion (at most 5 minutes): use a Streamable HTTP client")

// newIdentityAssertions is the credential source of u's identity_assertion
// (nil when it has none). The assertion's header joins the headers
// stripped from client requests.
func (m *mount) newIdentityAssertions(u config.Upstream) (credentialSource, error) {
	if u.UpstreamAuth == nil || u.UpstreamAuth.IdentityAssertion == nil || m.g.assertKeys == nil {
		return nil, nil
	}
	c := u.UpstreamAuth.IdentityAssertion
	a := &identityAssertions{
		keys: m.g.assertKeys, issuer: m.g.cfg.PublicURL, audience: c.AudienceFor(u),
		header: c.HeaderName(), ttl: c.Lifetime(), now: m.g.assertKeys.now,
	}
	a.bearer = a.header == "Authorization"
	if c.Mode == "cached" {
		a.cache = newAssertionCache(assertionCacheSize)
	}
	m.stripHeaders = append(m.stripHeaders, a.header)
	return a, nil
}

func (a *identityAssertions) addTo(_ context.Context, c credCaller, h http.Header) error {
	if c.legacy {
		return ErrAssertionLegacy
	}
	jwt, err := a.assertion(c.p)
	if err != nil {
		return err
	}
	if a.bearer {
		jwt = "Bearer " + jwt
	}
	h[a.header] = []string{jwt}
	return nil
}

// assertion is the caller's assertion: a new one, or in cached mode one
// made earlier for the same identity that has at least a quarter of its
// lifetime left and does not outlive the caller's access token.
func (a *identityAssertions) assertion(p *resource.Principal) (string, error) {
	if p == nil || p.Subject == "" {
		return "", errors.New("identity_assertion: the access token names no subject (sub), so there is no identity to assert")
	}
	act, err := actorClaim(p.Claims["act"], 0)
	if err != nil {
		return "", fmt.Errorf("identity_assertion: the access token's act claim %v: an assertion cannot state the delegation faithfully", err)
	}
	now := a.now()
	var key string
	if a.cache != nil {
		key = assertionCacheKey(p, act)
		if jwt, ok := a.cache.get(key, now, a.ttl/4, p.Expiry); ok {
			return jwt, nil
		}
	}
	jwt, exp, err := a.mint(p, act, now)
	if err != nil {
		return "", err
	}
	if a.cache != nil {
		a.cache.put(key, jwt, exp, now)
	}
	return jwt, nil
}

// assertionClaims is the JWT payload. sub alone is unique per issuer only,
// and a gateway may trust several issuers: sub_id (RFC 9493 §3.2.3,
// format iss_sub) names both.
type assertionClaims struct {
	Iss      string          `json:"iss"`
	Sub      string          `json:"sub"`
	SubID    subjectID       `json:"sub_id"`
	Aud      string          `json:"aud"`
	ClientID string          `json:"client_id,omitempty"`
	Scope    string          `json:"scope,omitempty"`
	Act      json.RawMessage `json:"act,omitempty"`
	Jti      string          `json:"jti"`
	Iat      int64           `json:"iat"`
	Exp      int64           `json:"exp"`
}

// subjectID is an RFC 9493 subject identifier in the iss_sub format.
type subjectID struct {
	Format string `json:"format"`
	Iss    string `json:"iss"`
	Sub    string `json:"sub"`
}

// mint signs a new assertion for p; exp never passes the access token's.
func (a *identityAssertions) mint(p *resource.Principal, act json.RawMessage, now time.Time) (string, time.Time, error) {
	exp := now.Add(a.ttl)
	if !p.Expiry.IsZero() && p.Expiry.Before(exp) {
		exp = p.Expiry
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	claims, err := json.Marshal(assertionClaims{
		Iss: a.issuer, Sub: p.Subject, SubID: subjectID{"iss_sub", p.Issuer, p.Subject}, Aud: a.audience,
		ClientID: p.ClientID, Scope: strings.Join(p.Scopes, " "), Act: act,
		Jti: base64.RawURLEncoding.EncodeToString(id[:]), Iat: now.Unix(), Exp: exp.Unix(),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	k := a.keys.current().signer(now)
	if k == nil {
		return "", time.Time{}, errors.New("identity_assertion: no signing key is active (check identity_assertion_keys.key_file)")
	}
	jwt, err := k.sign(claims)
	return jwt, exp, err
}

// sign is the JWS compact serialization of payload under k (RFC 7515
// §7.1; ES256 per RFC 7518 §3.4: R and S, 32 bytes each).
func (k *assertionKey) sign(payload []byte) (string, error) {
	n := len(k.header) + 1 + base64.RawURLEncoding.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+86)
	copy(buf, k.header)
	buf[len(k.header)] = '.'
	base64.RawURLEncoding.Encode(buf[len(k.header)+1:], payload)
	digest := sha256.Sum256(buf)
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// maxActDepth bounds the delegation chain an assertion repeats.
const maxActDepth = 8

// actorClaim is the RFC 8693 §4.1 act claim of the access token, reduced to
// its identity members (sub, iss and the nested act of a prior actor: "non-
// identity claims (e.g., exp, nbf, and aud) are not meaningful when used
// within an act claim"); nil when the token has none. A malformed one is an
// error: dropping it would present a delegated call as the user's own.
func actorClaim(v any, depth int) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("is not a JSON object")
	}
	if depth >= maxActDepth {
		return nil, fmt.Errorf("nests more than %d actors", maxActDepth)
	}
	sub, ok := m["sub"].(string)
	if !ok || sub == "" {
		return nil, errors.New("names no actor (sub)")
	}
	out := struct {
		Sub string          `json:"sub"`
		Iss string          `json:"iss,omitempty"`
		Act json.RawMessage `json:"act,omitempty"`
	}{Sub: sub}
	if iss, present := m["iss"]; present {
		if out.Iss, ok = iss.(string); !ok {
			return nil, errors.New("has a non-string iss")
		}
	}
	var err error
	if out.Act, err = actorClaim(m["act"], depth+1); err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// jwksHandler serves the identity assertion keys at assertionJWKSPath:
// unauthenticated, so the answer is precomputed per key set (no work per
// request beyond the periodic reread of the key file, one caller at a
// time), cacheable, and small (at most three keys in steady state).
func (ks *assertionKeys) jwksHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"method_not_allowed","error_description":"use GET"}`))
			return
		}
		s := ks.current()
		h := w.Header()
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(assertionJWKSMaxAge.Seconds())))
		h.Set("ETag", s.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == s.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Content-Length", fmt.Sprint(len(s.jwks)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(s.jwks)
		}
	})
}

// assertionJWKSPath is where the gateway publishes the identity assertion
// keys (RFC 8615 well-known prefix, mcpgate's own name under it).
const assertionJWKSPath = "/.well-known/mcpgate/identity-jwks.json"

// openAssertionKeys loads the identity assertion keys when an upstream
// uses them.
func (g *Gateway) openAssertionKeys() error {
	for _, u := range g.cfg.Upstreams {
		if u.UpstreamAuth != nil && u.UpstreamAuth.IdentityAssertion != nil {
			ks, err := newAssertionKeys(g.cfg.IdentityAssertionKeys, g.log, time.Now)
			g.assertKeys = ks
			return err
		}
	}
	return nil
}

// assertionCacheSize bounds the cached assertions of one upstream.
const assertionCacheSize = 10000

// assertionCache holds assertions for reuse (mode cached).
type assertionCache struct {
	max int
	mu  sync.Mutex // guards m
	m   map[string]cachedAssertion
}

type cachedAssertion struct {
	jwt string
	exp time.Time
}

func newAssertionCache(max int) *assertionCache {
	return &assertionCache{max: max, m: make(map[string]cachedAssertion)}
}

// assertionCacheKey is the identity an assertion states, length-prefixed
// so that no two identities share a key.
func assertionCacheKey(p *resource.Principal, act json.RawMessage) string {
	b := make([]byte, 0, 64+len(p.Issuer)+len(p.Subject)+len(p.ClientID)+len(act))
	put := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	put(p.Issuer)
	put(p.Subject)
	put(p.ClientID)
	b = strconv.AppendInt(b, int64(len(p.Scopes)), 10)
	for _, s := range p.Scopes {
		put(s)
	}
	put(string(act))
	return string(b)
}

// get returns the assertion for key if it has at least left of its life
// and does not outlive tokenExp (zero: no bound).
func (c *assertionCache) get(key string, now time.Time, left time.Duration, tokenExp time.Time) (string, bool) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok || e.exp.Sub(now) < left || (!tokenExp.IsZero() && e.exp.After(tokenExp)) {
		return "", false
	}
	return e.jwt, true
}

// put stores an assertion; a full cache first drops the expired ones and,
// when that frees nothing, starts over (it is only a cache).
func (c *assertionCache) put(key, jwt string, exp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !e.exp.After(now) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[key] = cachedAssertion{jwt: jwt, exp: exp}
}
