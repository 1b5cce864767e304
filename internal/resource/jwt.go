package resource

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// allJWTAlgs is the parse-time allow-list; each issuer's own list is
// enforced after the issuer is known.
var allJWTAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// verifyJWT verifies a JWT access token: signature with the issuer's key
// and allowed algorithm, iss, aud, exp, nbf, iat (RFC 9068 §4).
func (v *Verifier) verifyJWT(ctx context.Context, token string, now time.Time) (*Principal, time.Time, error) {
	jws, err := jose.ParseSigned(token, allJWTAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, time.Time{}, invalidToken("the access token is not a JWT signed with an accepted asymmetric algorithm")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders["typ"].(string); strings.EqualFold(typ, "dpop+jwt") {
		return nil, time.Time{}, invalidToken("a DPoP proof is not an access token")
	}
	// The claims are decoded once, before verification, only to pick the
	// issuer's key set; nothing is trusted until the signature verifies
	// over these same bytes.
	payload := jws.UnsafePayloadWithoutVerification()
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, time.Time{}, invalidToken("the access token claims are malformed")
	}
	iss, _ := claims["iss"].(string)
	k, ok := v.issuers[iss]
	if !ok {
		return nil, time.Time{}, invalidToken("the access token's issuer is not trusted here")
	}
	if !slices.Contains(k.algs, jose.SignatureAlgorithm(h.Algorithm)) {
		return nil, time.Time{}, invalidToken("the access token's algorithm %s is not accepted for its issuer", h.Algorithm)
	}
	verified := false
	for _, key := range k.candidates(ctx, h.KeyID) {
		if out, err := jws.Verify(key.Key); err == nil && bytes.Equal(out, payload) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, time.Time{}, invalidToken("the access token signature does not verify with the issuer's keys")
	}
	return v.checkClaims(k, claims, now)
}

// checkClaims validates registered claims and builds the principal. It is
// shared by JWT and introspection results.
func (v *Verifier) checkClaims(k *issuerKeys, c map[string]any, now time.Time) (*Principal, time.Time, error) {
	cfg := k.cfg
	if iss, _ := c["iss"].(string); iss != cfg.Issuer {
		return nil, time.Time{}, invalidToken("the access token's issuer is not trusted here")
	}
	aud := stringsOf(c["aud"])
	if !audienceOK(aud, v.o.Resource, cfg.Audiences) {
		return nil, time.Time{}, invalidToken("the access token is not meant for this resource (aud must contain %s)", v.o.Resource)
	}
	leeway := cfg.Leeway.Duration
	exp, hasExp := numeric(c["exp"])
	if !hasExp && !cfg.AllowMissingExp {
		return nil, time.Time{}, invalidToken("the access token has no exp")
	}
	if hasExp && !now.Before(exp.Add(leeway)) {
		return nil, time.Time{}, invalidToken("the access token has expired")
	}
	if nbf, ok := numeric(c["nbf"]); ok && now.Add(leeway).Before(nbf) {
		return nil, time.Time{}, invalidToken("the access token is not valid yet (nbf)")
	}
	if iat, ok := numeric(c["iat"]); ok && now.Add(leeway).Before(iat) {
		return nil, time.Time{}, invalidToken("the access token was issued in the future (iat)")
	}
	p := &Principal{Issuer: cfg.Issuer, Audience: aud, Claims: c, Expiry: exp}
	p.Subject, _ = c["sub"].(string)
	p.ClientID, _ = c["client_id"].(string)
	if p.ClientID == "" {
		p.ClientID, _ = c["azp"].(string)
	}
	if p.Subject == "" {
		if p.ClientID == "" {
			return nil, time.Time{}, invalidToken("the access token names no subject (sub) or client (client_id)")
		}
		p.Subject = "client:" + p.ClientID
	}
	p.Scopes = scopesOf(c, cfg.ScopeClaim)
	if cnf, ok := c["cnf"].(map[string]any); ok {
		p.JKT, _ = cnf["jkt"].(string)
	}
	until := now.Add(cfg.MaxCacheTTL.Duration)
	if hasExp && exp.Before(until) {
		until = exp
	}
	return p, until, nil
}

func audienceOK(aud []string, resource string, extra []string) bool {
	for _, a := range aud {
		if a == resource || slices.Contains(extra, a) {
			return true
		}
	}
	return false
}

func numeric(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0), true
	case int64:
		return time.Unix(n, 0), true
	}
	return time.Time{}, false
}

func stringsOf(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// scopesOf reads scopes from "scope" (space separated, RFC 9068) or "scp"
// (array or string), per the issuer's scope_claim.
func scopesOf(c map[string]any, claim string) []string {
	read := func(name string) []string {
		switch t := c[name].(type) {
		case string:
			return strings.Fields(t)
		case []any:
			return stringsOf(t)
		}
		return nil
	}
	if claim != "" {
		return read(claim)
	}
	if s := read("scope"); s != nil {
		return s
	}
	return read("scp")
}
