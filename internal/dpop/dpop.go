// Package dpop implements RFC 9449 (OAuth 2.0 Demonstrating Proof of
// Possession) as the MCP DPoP profile (SEP-1932) uses it, plus the optional
// content_digest claim of the profile's first draft: creating proofs
// (clients) and verifying them (resource and authorization servers), with a
// jti replay store and server nonces.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Error codes of RFC 9449 §7.1 and §12.2.
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeUseNonce     = "use_dpop_nonce"
)

// Error is a refused proof. Description is safe to show to the client.
type Error struct {
	Code        string
	Description string
	// Nonce is the fresh nonce to send in DPoP-Nonce with use_dpop_nonce.
	Nonce string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func invalid(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidProof, Description: fmt.Sprintf(format, args...)}
}

// DefaultAlgorithms is the proof algorithm allow-list: asymmetric only.
var DefaultAlgorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// asymmetric is every algorithm a proof may ever use.
var asymmetric = map[string]jose.SignatureAlgorithm{
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"EdDSA": jose.EdDSA,
}

// ProofOptions are the optional claims of a proof.
type ProofOptions struct {
	// AccessToken binds the proof to a token (ath); "" for token requests.
	AccessToken string
	// Nonce is a server-provided nonce, "" when none was asked for.
	Nonce string
	// Body and ContentDigest add the content_digest claim over Body. Off by
	// default: standard RFC 9449 proofs carry no body digest, and the
	// current MCP DPoP profile defines none.
	Body          []byte
	ContentDigest bool
}

// NewProof creates a DPoP proof JWT (RFC 9449 §4.2) signed by key with alg
// for the request method and URL htu (query and fragment are removed).
func NewProof(key crypto.Signer, alg, method, htu string, opt ProofOptions) (string, error) {
	sa, ok := asymmetric[alg]
	if !ok {
		return "", fmt.Errorf("dpop: algorithm %q is not an asymmetric JWS algorithm", alg)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: sa, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return "", fmt.Errorf("dpop: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti),
		"htm": method,
		"htu": StripURL(htu),
		"iat": time.Now().Unix(),
	}
	if opt.AccessToken != "" {
		claims["ath"] = ATH(opt.AccessToken)
	}
	if opt.Nonce != "" {
		claims["nonce"] = opt.Nonce
	}
	if opt.ContentDigest {
		claims["content_digest"] = ContentDigest(opt.Body)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Thumbprint is the RFC 7638 JWK SHA-256 thumbprint of pub, base64url
// without padding: the value of cnf.jkt and dpop_jkt.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return "", fmt.Errorf("dpop: unsupported public key type %T", pub)
	}
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// ATH is the ath claim: base64url(SHA-256(access token)).
func ATH(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// ContentDigest is the MCP content_digest claim: "sha-256=:" + standard
// base64 of SHA-256(body) + ":" (RFC 9530 §2 syntax).
func ContentDigest(body []byte) string {
	h := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(h[:]) + ":"
}

// StripURL removes query and fragment (RFC 9449 §4.2 htu).
func StripURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// normalizeURL compares htu values per RFC 9449 §4.3: scheme and host case
// insensitive, default ports removed, no query or fragment.
func normalizeURL(s string) (string, error) {
	u, err := url.Parse(StripURL(s))
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", errors.New("not an absolute URL")
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}
