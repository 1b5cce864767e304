package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// JWT assertions (private_key_jwt client authentication, ID-JAGs and
// workload JWTs, RFC 7523) share one parser and one set of rules: an
// explicit algorithm allow-list (never none or a MAC), one signature, a
// size bound, required exp/iat with a bounded lifetime, and a single-use
// jti.

// assertionAlgs are the accepted signature algorithms.
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256, jose.EdDSA}

const (
	maxAssertionBytes = 16 << 10
	assertionSkew     = 60 * time.Second
	// Assertion replay store: entries in memory, and one owner's share
	// (a client, an IdP, a workload issuer).
	assertionReplayEntries  = 100000
	AssertionReplayPerOwner = 10000
)

// assertion is a parsed, not yet verified JWT.
type assertion struct {
	tok    *jwt.JSONWebToken
	kid    string
	typ    string
	claims map[string]any // unverified; for routing only
}

// parseAssertion checks the form of a JWT assertion; the signature is
// checked by verify once the issuer's keys are known.
func parseAssertion(raw string) (*assertion, error) {
	if raw == "" {
		return nil, errors.New("the assertion is missing")
	}
	if len(raw) > maxAssertionBytes {
		return nil, fmt.Errorf("the assertion is larger than %d bytes", maxAssertionBytes)
	}
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return nil, fmt.Errorf("the assertion is not a JWT signed with ES256, RS256, PS256 or EdDSA: %v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("the assertion must carry exactly one signature")
	}
	h := tok.Headers[0]
	a := &assertion{tok: tok, kid: h.KeyID}
	if t, ok := h.ExtraHeaders[jose.HeaderType].(string); ok {
		a.typ = strings.ToLower(t)
	} else if h.ExtraHeaders[jose.HeaderType] != nil {
		return nil, errors.New("the assertion's typ header is not a string")
	}
	if h.JSONWebKey != nil || h.ExtraHeaders["jku"] != nil || h.ExtraHeaders["x5u"] != nil || h.ExtraHeaders["x5c"] != nil {
		// Keys come from the issuer's configured key set, never from the
		// token itself.
		return nil, errors.New("the assertion names its own key (jwk, jku, x5u or x5c); keys come from the issuer's key set only")
	}
	if err := tok.UnsafeClaimsWithoutVerification(&a.claims); err != nil {
		return nil, fmt.Errorf("the assertion's claims are not a JSON object: %v", err)
	}
	return a, nil
}

// issuer is the unverified iss, to choose the keys.
func (a *assertion) issuer() string {
	s, _ := a.claims["iss"].(string)
	return s
}

// verify checks the signature with one of keys and decodes the claims.
func (a *assertion) verify(keys []jose.JSONWebKey, out ...any) error {
	if len(keys) == 0 {
		if a.kid != "" {
			return fmt.Errorf("the issuer's key set has no signing key %q", a.kid)
		}
		return errors.New("the issuer's key set has no signing key")
	}
	var err error
	for _, k := range keys {
		if err = a.tok.Claims(k.Key, out...); err == nil {
			return nil
		}
	}
	return errors.New("the assertion's signature does not verify with the issuer's keys")
}

// checkTimes: exp and iat present, not expired, not issued in the future,
// exp - iat at most maxLife, nbf (if any) passed; all with assertionSkew.
func checkTimes(cl *jwt.Claims, now time.Time, maxLife time.Duration) error {
	switch {
	case cl.Expiry == nil:
		return errors.New("the assertion has no exp")
	case cl.IssuedAt == nil:
		return errors.New("the assertion has no iat")
	case now.After(cl.Expiry.Time().Add(assertionSkew)):
		return errors.New("the assertion has expired")
	case cl.IssuedAt.Time().After(now.Add(assertionSkew)):
		return errors.New("the assertion is issued in the future (iat)")
	case cl.Expiry.Time().Sub(cl.IssuedAt.Time()) > maxLife:
		return fmt.Errorf("the assertion is valid for longer than %s (exp - iat)", maxLife)
	case cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(assertionSkew)):
		return errors.New("the assertion is not valid yet (nbf)")
	}
	return nil
}

// audienceIs: aud is exactly one value, one of want (RFC 7523bis and the
// ID-JAG draft: a single audience, never an array of several).
func audienceIs(aud jwt.Audience, want ...string) bool {
	if len(aud) != 1 {
		return false
	}
	for _, w := range want {
		if aud[0] == w {
			return true
		}
	}
	return false
}

// errReplayed: the jti was used before.
var errReplayed = errors.New("replayed")

// useOnce records a jti until the assertion expires; a second use, or a
// store that cannot answer, is an error (fail closed).
func (s *Server) useOnce(ctx context.Context, owner, kind, iss, jti string, exp time.Time) error {
	if jti == "" {
		return errors.New("the assertion has no jti")
	}
	seen, err := s.cfg.AssertionReplay.SeenBy(ctx, owner, kind+"\x00"+iss+"\x00"+jti, exp.Add(assertionSkew))
	if err != nil {
		return err
	}
	if seen {
		return errReplayed
	}
	return nil
}

// replayError answers a failed useOnce: replay is invalid_grant (or
// invalid_client for client assertions); a store that could not answer
// is 503 with Retry-After, never an acceptance.
func replayError(w http.ResponseWriter, err error, code, what string) {
	switch {
	case errors.Is(err, errReplayed):
		oauthError(w, statusFor(code), code, what+" was already used (its jti is single use); get a fresh one")
	case errors.Is(err, dpop.ErrReplayUnavailable):
		w.Header().Set("Retry-After", "5")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "shared state (Redis) unavailable: "+what+" could not be checked for replay; retry after 5s")
	case errors.Is(err, dpop.ErrReplayShareFull), errors.Is(err, dpop.ErrReplayFull):
		w.Header().Set("Retry-After", "30")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many assertions are still within their replay window; retry after 30s")
	default:
		oauthError(w, statusFor(code), code, what+": "+err.Error())
	}
}

func statusFor(code string) int {
	if code == "invalid_client" {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}
