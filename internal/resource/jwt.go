package resource

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
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
	var (
		alg, kid, typ string
		payload       []byte
		k             *issuerKeys
		verify        func(key jose.JSONWebKey) bool
	)
	if c, ok := parseES256(token); ok {
		alg, kid, typ, payload = string(jose.ES256), c.kid, c.typ, c.payload
		verify = func(key jose.JSONWebKey) bool { return c.verify(k, key) }
	} else {
		jws, err := jose.ParseSignedCompact(token, allJWTAlgs)
		if err != nil || len(jws.Signatures) != 1 {
			return nil, time.Time{}, invalidToken("the access token is not a JWT signed with an accepted asymmetric algorithm")
		}
		h := jws.Signatures[0].Protected
		alg, kid = h.Algorithm, h.KeyID
		typ, _ = h.ExtraHeaders["typ"].(string)
		payload = jws.UnsafePayloadWithoutVerification()
		verify = func(key jose.JSONWebKey) bool {
			out, err := jws.Verify(key.Key)
			return err == nil && bytes.Equal(out, payload)
		}
	}
	if err := checkJWTType(typ); err != nil {
		return nil, time.Time{}, err
	}
	// The claims are decoded once, before verification, only to pick the
	// issuer's key set; nothing is trusted until the signature verifies
	// over these same bytes.
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, time.Time{}, invalidToken("the access token claims are malformed")
	}
	iss, _ := claims["iss"].(string)
	k, ok := v.issuers[iss]
	if !ok {
		return nil, time.Time{}, invalidToken("the access token's issuer is not trusted here")
	}
	if k.cfg.RequireATJWT && !isATJWT(typ) {
		return nil, time.Time{}, invalidToken("the access token must be an RFC 9068 JWT access token (typ at+jwt)")
	}
	if !slices.Contains(k.algs, jose.SignatureAlgorithm(alg)) {
		return nil, time.Time{}, invalidToken("the access token's algorithm %s is not accepted for its issuer", alg)
	}
	verified := false
	for _, key := range k.candidates(ctx, kid) {
		if verified = verify(key); verified {
			break
		}
	}
	if !verified {
		return nil, time.Time{}, invalidToken("the access token signature does not verify with the issuer's keys")
	}
	return v.checkClaims(k, claims, now)
}

// es256Token is an ES256 JWT in plain compact form, parsed without go-jose
// so that it can be verified through a key's precomputed P-256 table
// (package p256: half the cost of crypto/ecdsa).
type es256Token struct {
	kid, typ     string
	payload, sig []byte
	input        string // the signing input: the token's first two segments as sent
}

// parseES256 accepts only what needs no more than the above: three
// base64url segments, a header whose "alg" is exactly "ES256" and which has
// no "crit" or "b64" member (go-jose handles those, and refuses unknown
// critical extensions), and a 64-byte signature. Anything else goes to
// go-jose. Member names are matched exactly (a map, not a struct, since
// encoding/json matches struct fields case-insensitively).
func parseES256(token string) (*es256Token, bool) {
	if strings.Count(token, ".") != 2 || !base64URLOnly(token) {
		return nil, false
	}
	hb64, rest, _ := strings.Cut(token, ".")
	pb64, sb64, _ := strings.Cut(rest, ".")
	hdr, err := base64.RawURLEncoding.DecodeString(hb64)
	if err != nil {
		return nil, false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(hdr, &h) != nil || string(h["alg"]) != `"ES256"` {
		return nil, false
	}
	if _, crit := h["crit"]; crit {
		return nil, false
	}
	if _, b64 := h["b64"]; b64 {
		return nil, false
	}
	t := &es256Token{input: token[:len(hb64)+1+len(pb64)]}
	if raw, ok := h["kid"]; ok && json.Unmarshal(raw, &t.kid) != nil {
		return nil, false
	}
	if raw, ok := h["typ"]; ok && json.Unmarshal(raw, &t.typ) != nil {
		return nil, false
	}
	if t.payload, err = base64.RawURLEncoding.DecodeString(pb64); err != nil {
		return nil, false
	}
	if t.sig, err = base64.RawURLEncoding.DecodeString(sb64); err != nil || len(t.sig) != 64 {
		return nil, false
	}
	return t, true
}

// verify checks the signature with key: through its table when the issuer
// has one, else with crypto/ecdsa. Only P-256 keys can verify ES256.
func (t *es256Token) verify(k *issuerKeys, key jose.JSONWebKey) bool {
	pub, ok := key.Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return false
	}
	sum := sha256.Sum256([]byte(t.input))
	if tb := k.table(pub); tb != nil {
		return tb.VerifyJWS(sum[:], t.sig)
	}
	return ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(t.sig[:32]), new(big.Int).SetBytes(t.sig[32:]))
}

func base64URLOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
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
	// A confirmation the gateway cannot enforce refuses the token: a cnf
	// that is not an object, a jkt that is not a non-empty string, or a
	// binding of another kind (mTLS x5t#S256, jwk) would otherwise leave a
	// sender-constrained credential usable as a bearer token.
	if raw, ok := c["cnf"]; ok {
		cnf, isObj := raw.(map[string]any)
		if !isObj || len(cnf) == 0 {
			return nil, time.Time{}, invalidToken("the access token's cnf claim is malformed")
		}
		for m := range cnf {
			if m != "jkt" {
				return nil, time.Time{}, invalidToken("the access token is bound by cnf.%s, which this resource cannot check", safeMember(m))
			}
		}
		if raw, ok := cnf["jkt"]; ok {
			if p.JKT, _ = raw.(string); p.JKT == "" {
				return nil, time.Time{}, invalidToken("the access token's cnf.jkt is malformed")
			}
		}
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

// checkJWTType refuses a JWT whose typ header (RFC 8725 §3.11 explicit
// typing) names anything but an access token: an ID token, logout token,
// DPoP proof, authorization request, security event or any other typed JWT
// must never pass as a credential, whoever signed it. No typ and the
// generic "JWT" remain accepted (many issuers send them on access tokens);
// an issuer with require_at_jwt (the built-in server) needs at+jwt.
func checkJWTType(typ string) error {
	switch {
	case typ == "", strings.EqualFold(typ, "JWT"), strings.EqualFold(typ, "application/jwt"), isATJWT(typ):
		return nil
	case strings.EqualFold(typ, "dpop+jwt"):
		return invalidToken("a DPoP proof is not an access token")
	}
	return invalidToken("the token is not an access token (JWT typ %s)", safeScheme(typ))
}

// isATJWT: RFC 9068 §2.1 "at+jwt" (media type application/at+jwt; the
// "application/" prefix may be omitted, RFC 7515 §4.1.9).
func isATJWT(typ string) bool {
	return strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
}

func safeMember(m string) string {
	if len(m) > 20 {
		m = m[:20]
	}
	out := []byte(m)
	for i, c := range out {
		if c < 0x21 || c > 0x7e {
			out[i] = '?'
		}
	}
	return string(out)
}
