package config

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// IdentityAssertion configures upstream_auth.identity_assertion: the
// gateway sends the upstream a short-lived JWT it signs itself, stating
// who the caller is (issue 15, part 3; docs/upstream-identity.md, "Signed
// identity assertions"). Its claims come from the verified access token
// only.
type IdentityAssertion struct {
	// Header is the request header that carries the assertion. Default
	// "Mcpgate-Identity-Assertion" (outside the MCP specification's Mcp-*
	// names). "Authorization" sends "Bearer <assertion>". A client-sent
	// header of this name is always stripped.
	Header string `yaml:"header"`
	// Audience is the aud claim. Default: the upstream's url.
	Audience string `yaml:"audience"`
	// TTL is the assertion's lifetime (exp - iat): 10s to 5m, default 2m.
	TTL Duration `yaml:"ttl"`
	// Mode is per_request (default: a new assertion, with a new jti, for
	// each request) or cached (one assertion per issuer, subject, client,
	// scopes and actor, reused until a quarter of its lifetime is left).
	Mode string `yaml:"mode"`
}

// IdentityAssertionKeys configures identity_assertion_keys, the gateway's
// own ES256 keys that sign identity assertions (never the built-in
// authorization server's keys).
type IdentityAssertionKeys struct {
	// KeyFile holds the key set (created 0600 when missing, rewritten
	// atomically on rotation), so that a restart keeps the published keys.
	// Replicas share one file on a shared volume: each signs only with a
	// key that is in the file, and publishes every key of the file.
	// Default: keys in memory, new at every start. Required with
	// state.redis (replicas).
	KeyFile string `yaml:"key_file"`
	// Rotation is how long a key signs before its successor takes over:
	// 1h to 2160h (90 days), default 24h.
	Rotation Duration `yaml:"rotation"`
}

// Identity assertion defaults and bounds.
const (
	DefaultAssertionHeader   = "Mcpgate-Identity-Assertion"
	DefaultAssertionTTL      = 2 * time.Minute
	MaxAssertionTTL          = 5 * time.Minute
	minAssertionTTL          = 10 * time.Second
	DefaultAssertionRotation = 24 * time.Hour
	minAssertionRotation     = time.Hour
	maxAssertionRotation     = 90 * 24 * time.Hour
)

// HeaderName is the header the assertion is sent in (canonical form).
func (c *IdentityAssertion) HeaderName() string {
	if c.Header == "" {
		return DefaultAssertionHeader
	}
	return http.CanonicalHeaderKey(c.Header)
}

// Lifetime is the assertion's lifetime.
func (c *IdentityAssertion) Lifetime() time.Duration {
	if c.TTL.Duration == 0 {
		return DefaultAssertionTTL
	}
	return c.TTL.Duration
}

// AudienceFor is the aud claim for upstream u.
func (c *IdentityAssertion) AudienceFor(u Upstream) string {
	if c.Audience != "" {
		return c.Audience
	}
	return u.URL
}

// Period is the key rotation period.
func (k IdentityAssertionKeys) Period() time.Duration {
	if k.Rotation.Duration == 0 {
		return DefaultAssertionRotation
	}
	return k.Rotation.Duration
}

// reservedAssertionHeaders are headers the transport or the gateway sets
// itself: an assertion in one of them would break the request or hide
// behind another meaning.
var reservedAssertionHeaders = []string{"Host", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection",
	"Accept", "Cookie", "Dpop", "Proxy-Authorization", "Last-Event-Id", "Mcp-Session-Id", "Mcp-Protocol-Version",
	"Mcp-Method", "Mcp-Name", "Upgrade", "Te", "Trailer"}

// identityAssertion checks a IdentityAssertion; nil is not configured.
func (v *validator) identityAssertion(key string, c *IdentityAssertion) {
	if c == nil {
		return
	}
	if c.Header != "" && !headerToken(c.Header) {
		v.add(key+".header", "%q is not a header name: use letters, digits and '-', e.g. %s", c.Header, DefaultAssertionHeader)
	}
	h := c.HeaderName()
	if slices.Contains(reservedAssertionHeaders, h) || strings.HasPrefix(h, "Mcp-Param-") {
		v.add(key+".header", "%s is a header the transport or MCP uses: pick another, e.g. %s", h, DefaultAssertionHeader)
	}
	if d := c.TTL.Duration; d != 0 && (d < minAssertionTTL || d > MaxAssertionTTL) {
		v.add(key+".ttl", "%v: use 10s to 5m (default 2m)", d)
	}
	if !slices.Contains([]string{"", "per_request", "cached"}, c.Mode) {
		v.add(key+".mode", "%q: use per_request or cached", c.Mode)
	}
	if c.Audience != "" && strings.TrimSpace(c.Audience) != c.Audience {
		v.add(key+".audience", "%q has surrounding spaces", c.Audience)
	}
}

// identityAssertions checks what identity assertions need beyond their own
// section: a Streamable HTTP upstream, a header no other setting uses, and
// keys every replica shares.
func (v *validator) identityAssertions(g *Gateway) {
	used := false
	for i := range g.Upstreams {
		u := &g.Upstreams[i]
		if u.UpstreamAuth == nil || u.UpstreamAuth.IdentityAssertion == nil {
			continue
		}
		used = true
		key := fmt.Sprintf("upstreams[%d].upstream_auth.identity_assertion", i)
		v.assertionUpstream(key, u)
	}
	k := g.IdentityAssertionKeys
	if d := k.Rotation.Duration; d != 0 && (d < minAssertionRotation || d > maxAssertionRotation) {
		v.add("identity_assertion_keys.rotation", "%v: use 1h to 2160h (default 24h)", d)
	}
	if !used {
		if k.KeyFile != "" || k.Rotation.Duration != 0 {
			v.add("identity_assertion_keys", "no upstream has upstream_auth.identity_assertion: remove this section or configure one")
		}
		return
	}
	if g.State.Redis.URL != "" && k.KeyFile == "" {
		v.add("identity_assertion_keys.key_file", "required with state.redis: every replica must sign with, and publish, the same keys; put the file on a volume all replicas share")
	}
}

func (v *validator) assertionUpstream(key string, u *Upstream) {
	c := u.UpstreamAuth.IdentityAssertion
	switch u.Transport {
	case "stdio":
		v.add(key, "a stdio upstream gets no HTTP headers: identity assertions need transport streamable")
	case "sse":
		v.add(key, "a legacy HTTP+SSE upstream connection outlives an assertion (at most 5m): identity assertions need transport streamable")
	}
	if c.Audience == "" && u.URL == "" {
		v.add(key+".audience", "required when the upstream has no url")
	}
	h := c.HeaderName()
	ih := u.IdentityHeaders
	for _, other := range []string{ih.Subject, ih.ClientID, ih.Scopes, ih.Issuer, u.UpstreamAuth.Header} {
		if other != "" && http.CanonicalHeaderKey(other) == h {
			v.add(key+".header", "%s is also an identity header or the upstream_auth header: give the assertion its own header", h)
		}
	}
}

// headerToken reports whether s is an RFC 9110 field name made of
// letters, digits and '-' (the characters header names use in practice).
func headerToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
