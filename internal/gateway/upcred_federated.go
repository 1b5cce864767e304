package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// upstream_auth.federated_token (issue 15, part 4): the caller's token
// from the built-in authorization server's federated identity provider
// goes to an upstream whose audience is that provider. The built-in
// server keeps and refreshes those tokens (authserver/fedtokens.go); the
// gateway asks it in-process, never over HTTP, and only for the subject
// of the token it has just verified — the built-in server's own token, so
// the subject is the user the provider signed in.

// federatedTokens is the built-in authorization server's in-process
// access to the kept tokens (authserver.Server implements it; the gateway
// finds it on Options.AuthServer). user is the subject of a token the
// server issued; kind is "access_token" or "id_token".
type federatedTokens interface {
	FederatedToken(ctx context.Context, user, kind string) (token string, expiry time.Time, err error)
}

// federatedSource sends the caller's kept provider token.
type federatedSource struct {
	tokens federatedTokens
	issuer string // the built-in server's issuer: the gateway's public URL
	kind   string
	header string
	bearer bool // Authorization: "Bearer <token>"; another header: the bare token

	cache *fedCache
}

// newFederatedToken is the federated_token source of u, if configured:
// to the header sources, or as the source of a stdio child's environment
// (child_env; a child gets no headers).
func (m *mount) newFederatedToken(u config.Upstream) (credentialSource, error) {
	a := u.UpstreamAuth
	if a == nil || a.FederatedToken == nil {
		return nil, nil
	}
	ft, ok := m.g.opts.AuthServer.(federatedTokens)
	if !ok {
		return nil, errors.New("upstream_auth.federated_token needs the built-in authorization server (authorization_server: builtin) in this process")
	}
	s := &federatedSource{tokens: ft, issuer: m.g.cfg.PublicURL, kind: a.FederatedToken.Token, header: a.FederatedToken.Header,
		cache: newFedCache(fedCacheEntries)}
	if s.kind == "" {
		s.kind = "access_token"
	}
	if s.header == "" {
		s.header = "Authorization"
	}
	s.bearer = http.CanonicalHeaderKey(s.header) == "Authorization"
	if a.ChildEnv != "" {
		return nil, m.setChildCredential(a.ChildEnv, s)
	}
	return s, nil
}

func (s *federatedSource) addTo(ctx context.Context, c credCaller, h http.Header) error {
	tok, err := s.value(ctx, c)
	if err != nil {
		return err
	}
	if s.bearer {
		tok = "Bearer " + tok
	}
	h.Set(s.header, tok)
	return nil
}

// envValue is the bare token for a stdio child (envSource).
func (s *federatedSource) envValue(ctx context.Context, c credCaller) (string, error) {
	return s.value(ctx, c)
}

// errFederatedSubject refuses a caller who has no federated identity.
type errFederatedSubject struct{ why string }

func (e errFederatedSubject) Error() string {
	return "this upstream needs your own token from the identity provider the built-in authorization server signs you in with, " + e.why
}

// value is the caller's token: only for a user the built-in server signed
// in (its issuer, a token with auth_time: never a client-credentials
// token, whose subject is a client id), looked up by that subject alone.
func (s *federatedSource) value(ctx context.Context, c credCaller) (string, error) {
	p := c.p
	switch {
	case p == nil:
		return "", errFederatedSubject{"and the request has no authenticated user"}
	case p.Issuer != s.issuer:
		return "", errFederatedSubject{fmt.Sprintf("but your token is from %s: sign in through the built-in authorization server (%s)", p.Issuer, s.issuer)}
	case p.Claims["auth_time"] == nil:
		return "", errFederatedSubject{"but this token has no user (client credentials): use a token a user signed in for"}
	}
	if tok, ok := s.cache.get(p.Subject, s.kind); ok {
		return tok, nil
	}
	tok, exp, err := s.tokens.FederatedToken(ctx, p.Subject, s.kind)
	if err != nil {
		return "", err
	}
	if tok == "" {
		return "", fmt.Errorf("the identity provider issued you no %s: sign in again through the identity provider", s.kind)
	}
	s.cache.put(p.Subject, s.kind, tok, exp)
	return tok, nil
}

// fedCache keeps recent answers of the built-in server briefly, so that a
// call does not open the sealed record (and, with PostgreSQL, cross the
// network) every time. An entry lives at most fedCacheTTL and ends
// fedCacheMargin before the token expires, so the built-in server is
// asked again in time to refresh it.
type fedCache struct {
	max int
	mu  sync.Mutex // guards m
	m   map[string]fedEntry
}

type fedEntry struct {
	tok   string
	until time.Time
}

const (
	fedCacheEntries = 10000
	fedCacheTTL     = 30 * time.Second
	fedCacheMargin  = 90 * time.Second
)

func newFedCache(max int) *fedCache { return &fedCache{max: max, m: map[string]fedEntry{}} }

func (c *fedCache) get(user, kind string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[kind+"\x00"+user]
	if !ok || !time.Now().Before(e.until) {
		return "", false
	}
	return e.tok, true
}

func (c *fedCache) put(user, kind, tok string, exp time.Time) {
	until := time.Now().Add(fedCacheTTL)
	if !exp.IsZero() && exp.Add(-fedCacheMargin).Before(until) {
		until = exp.Add(-fedCacheMargin)
	}
	if !time.Now().Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := time.Now()
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			return // full of live entries: the next call asks the built-in server
		}
	}
	c.m[kind+"\x00"+user] = fedEntry{tok: tok, until: until}
}
