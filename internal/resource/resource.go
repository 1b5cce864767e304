// Package resource is the OAuth 2.1 resource server of the gateway: it
// extracts the access token (Bearer or DPoP) from the Authorization header,
// verifies it (JWT against the issuer's JWKS, or RFC 7662 introspection),
// checks audience binding (RFC 8707) and DPoP proofs (RFC 9449 + MCP
// profile), caches verified tokens, and renders RFC 9728 metadata and
// RFC 6750 / RFC 9449 challenges.
package resource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
)

// Principal is a verified caller.
type Principal struct {
	Subject  string
	ClientID string
	Issuer   string
	Scopes   []string
	Audience []string
	Expiry   time.Time
	Claims   map[string]any
	// JKT is the confirmed DPoP key thumbprint (cnf.jkt) of a bound token.
	JKT string
	// TokenID is a short SHA-256 prefix of the token, for logs; never the token.
	TokenID string
}

// Error is a refused request. Descriptions are safe to show to clients and
// never contain the token.
type Error struct {
	// Status is 400, 401 or 403.
	Status int
	// Code is an RFC 6750 / RFC 9449 error code, "" when no token was sent.
	Code        string
	Description string
	// Scopes are the scopes to name in the challenge: those an
	// insufficient_scope refusal needs, or the set a 401 asks for. nil
	// means scopes_supported (see Verifier.Challenge).
	Scopes []string
	// Nonce is a DPoP nonce to send (use_dpop_nonce).
	Nonce string
	// dpopErr marks errors that belong in the DPoP challenge.
	dpopErr bool
	// cause is what Unwrap returns when set (dpop.ErrReplayShareFull,
	// dpop.ErrReplayFull).
	cause error
}

func (e *Error) Error() string {
	if e.Code == "" {
		return "no access token"
	}
	return e.Code + ": " + e.Description
}

// Unwrap lets errors.Is(err, ErrNoToken) work.
func (e *Error) Unwrap() error {
	if e.cause != nil {
		return e.cause
	}
	if e.Code == "" && e.Status == http.StatusUnauthorized {
		return ErrNoToken
	}
	return nil
}

// ErrNoToken means the request carried no access token.
var ErrNoToken = errors.New("resource: no access token")

func invalidToken(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: fmt.Sprintf(format, args...)}
}

func invalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

// Options configure a Verifier for one protected resource.
type Options struct {
	// Resource is the RFC 8707 identifier, compared exactly with aud.
	Resource string
	// Endpoint is the public URL of the MCP endpoint (DPoP htu, metadata URL).
	Endpoint string
	// Issuers are the trusted authorization servers.
	Issuers []config.Issuer
	// DPoP is "off", "optional" or "required"; DPoPNonce demands nonces.
	DPoP      string
	DPoPNonce bool
	// DPoPContentDigest is "optional" (default: standard RFC 9449 proofs
	// are accepted, a present content_digest claim is checked against the
	// body) or "required" (every POST proof must carry content_digest).
	DPoPContentDigest string
	// ScopesSupported go into metadata and 401 challenges.
	ScopesSupported       []string
	ResourceName          string
	ResourceDocumentation string
	HTTPClient            *http.Client
	Logger                *slog.Logger
	Now                   func() time.Time
	// Replay is the DPoP jti store; default in memory.
	Replay dpop.ReplayStore
	// Nonces issues and checks the DPoP nonces DPoPNonce demands; default
	// stateless nonces with a random key (this verifier only). Share one
	// source (NewNonceSource) so that every endpoint and replica accepts
	// the same nonces.
	Nonces dpop.NonceSource
	// Getenv reads introspection secrets from the environment.
	Getenv func(string) string
	// CacheSize bounds the verified-token cache. Default 10000.
	CacheSize int
}

// Verifier authenticates requests for one resource.
type Verifier struct {
	o       Options
	issuers map[string]*issuerKeys
	order   []*issuerKeys
	dpop    *dpop.Verifier
	cache   *tokenCache
	neg     *tokenCache // recently inactive opaque tokens
	origin  string      // scheme://host of Endpoint
	prmURL  string
	meta    []byte
	intro   []*introspector
	cancel  context.CancelFunc
}

// New validates o and starts loading the issuers' keys in the background.
// It does not fail when an issuer is unreachable; Ready reports that.
func New(ctx context.Context, o Options) (*Verifier, error) {
	if len(o.Issuers) == 0 {
		return nil, errors.New("no trusted issuer configured")
	}
	if o.Resource == "" {
		return nil, errors.New("resource identifier is empty")
	}
	eu, err := url.Parse(o.Endpoint)
	if err != nil || !eu.IsAbs() {
		return nil, fmt.Errorf("endpoint %q is not an absolute URL", o.Endpoint)
	}
	switch o.DPoP {
	case "":
		o.DPoP = "optional"
	case "off", "optional", "required":
	default:
		return nil, fmt.Errorf("dpop %q: use off, optional or required", o.DPoP)
	}
	switch o.DPoPContentDigest {
	case "":
		o.DPoPContentDigest = "optional"
	case "optional", "required":
	default:
		return nil, fmt.Errorf("dpop_content_digest %q: use optional or required", o.DPoPContentDigest)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	v := &Verifier{
		o: o, issuers: map[string]*issuerKeys{}, origin: eu.Scheme + "://" + eu.Host,
		cache: newTokenCache(o.CacheSize), neg: newTokenCache(o.CacheSize),
	}
	v.prmURL = v.origin + "/.well-known/oauth-protected-resource" + eu.EscapedPath()
	for i, is := range o.Issuers {
		for _, a := range is.Algorithms {
			if _, ok := jwtAlgs[a]; !ok {
				return nil, fmt.Errorf("issuers[%d].algorithms: %q is not an accepted asymmetric algorithm", i, a)
			}
		}
		if _, dup := v.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("issuer %s is listed twice", is.Issuer)
		}
		if is.Leeway.Duration == 0 {
			is.Leeway.Duration = 30 * time.Second
		}
		if is.MaxCacheTTL.Duration == 0 {
			is.MaxCacheTTL.Duration = 5 * time.Minute
		}
		if len(is.Algorithms) == 0 {
			is.Algorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}
		}
		k := newIssuerKeys(is, o.HTTPClient, o.Logger, o.Now)
		v.issuers[is.Issuer] = k
		v.order = append(v.order, k)
		if is.Introspection != nil {
			in, err := newIntrospector(k, o.Getenv)
			if err != nil {
				return nil, fmt.Errorf("issuers[%d].introspection: %w", i, err)
			}
			v.intro = append(v.intro, in)
		}
	}
	if o.DPoP != "off" {
		var nonces dpop.NonceSource
		if o.DPoPNonce {
			if nonces = o.Nonces; nonces == nil {
				src, err := dpop.NewAEADNonces(dpop.AEADNonceOptions{Purpose: v.origin, Now: o.Now})
				if err != nil {
					return nil, err
				}
				nonces = src
			}
		}
		v.dpop = dpop.NewVerifier(dpop.VerifierOptions{Replay: o.Replay, Nonces: nonces, Now: o.Now})
	}
	v.meta = v.buildMetadata()
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	for _, k := range v.order {
		go k.run(bg)
	}
	return v, nil
}

// Close stops background key refreshes. It is idempotent.
func (v *Verifier) Close() { v.cancel() }

// Ready reports whether at least the keys (or introspection) of every
// issuer are usable.
func (v *Verifier) Ready() error {
	var errs []error
	for _, k := range v.order {
		errs = append(errs, k.ready())
	}
	return errors.Join(errs...)
}

// Nonce returns the current DPoP nonce ("" when nonces are off).
func (v *Verifier) Nonce() string {
	if v.dpop == nil {
		return ""
	}
	return v.dpop.Nonce()
}

// NextNonce is a fresh DPoP nonce to send with the successful response to
// a request whose proof bc carried, once that proof's nonce is past half its
// lifetime; "" otherwise.
func (v *Verifier) NextNonce(bc *BodyCheck) string {
	if v.dpop == nil || bc == nil {
		return ""
	}
	return v.dpop.NextNonce(bc.proof)
}

// tokenID is a short, non-reversible id of a token for logs and audit.
func tokenID(sum [32]byte) string { return hex.EncodeToString(sum[:6]) }

// Authenticate verifies the request's access token (and DPoP proof) and,
// when the proof carries content_digest, the body against it.
func (v *Verifier) Authenticate(r *http.Request, body []byte) (*Principal, error) {
	p, bc, err := v.AuthenticateHeaders(r)
	if err != nil {
		return nil, err
	}
	if err := bc.Check(body); err != nil {
		return nil, err
	}
	return p, nil
}

// BodyCheck is what remains of a request's authentication once its
// headers have been verified: a DPoP proof's content_digest claim, checked
// against the body after it has been read. The zero value (and nil) checks
// nothing.
type BodyCheck struct {
	proof *dpop.Proof
}

// Check verifies body against the proof's content_digest, if it had one.
func (c *BodyCheck) Check(body []byte) error {
	if c == nil || c.proof == nil {
		return nil
	}
	if err := c.proof.CheckBody(body); err != nil {
		var de *dpop.Error
		if errors.As(err, &de) {
			return &Error{Status: http.StatusUnauthorized, Code: de.Code, Description: de.Description, dpopErr: true}
		}
		return &Error{Status: http.StatusUnauthorized, Code: dpop.CodeInvalidProof, Description: "the DPoP proof was refused", dpopErr: true}
	}
	return nil
}

// Pending reports whether Check still has something to verify.
func (c *BodyCheck) Pending() bool { return c != nil && c.proof != nil && c.proof.ContentDigest != "" }

// AuthenticateHeaders verifies the access token and the DPoP proof from the
// request headers alone, so that a caller can be refused before anything of
// the body is read, and records the proof's jti (charged to the token's
// issuer and subject). The returned BodyCheck must be applied to the body
// once it has been read (it checks a DPoP content_digest claim, when
// present).
func (v *Verifier) AuthenticateHeaders(r *http.Request) (*Principal, *BodyCheck, error) {
	p, bc, err := v.VerifyHeaders(r)
	if err != nil {
		return nil, nil, err
	}
	if err := v.RecordProof(r.Context(), Owner(p), bc); err != nil {
		return nil, nil, err
	}
	return p, bc, nil
}

// Owner is the key a principal's budgets are charged to: issuer and
// subject (a subject needs a token of a trusted issuer, so a caller cannot
// multiply owners at will; proof keys it can).
func Owner(p *Principal) string { return p.Issuer + "\x00" + p.Subject }

// RecordProof records the jti of the DPoP proof VerifyHeaders checked,
// charged to owner's share of the replay store; nothing is recorded for
// a Bearer request. A replayed proof gives 401 invalid_dpop_proof; a full
// share of owner gives a 429 error (errors.Is dpop.ErrReplayShareFull) and
// a full store a 503 one (dpop.ErrReplayFull), a shared store that could
// not answer a 503 one (dpop.ErrReplayUnavailable). Nothing the request asks
// for may happen before RecordProof succeeded.
func (v *Verifier) RecordProof(ctx context.Context, owner string, bc *BodyCheck) error {
	if bc == nil || bc.proof == nil || v.dpop == nil {
		return nil
	}
	err := v.dpop.Record(ctx, owner, bc.proof)
	if err == nil {
		return nil
	}
	re := &Error{Status: http.StatusUnauthorized, Code: dpop.CodeInvalidProof, Description: "the DPoP proof was refused", dpopErr: true}
	var de *dpop.Error
	if errors.As(err, &de) {
		re.Code, re.Description = de.Code, de.Description
	}
	switch {
	case errors.Is(err, dpop.ErrReplayShareFull):
		re.Status, re.cause = http.StatusTooManyRequests, dpop.ErrReplayShareFull
	case errors.Is(err, dpop.ErrReplayFull):
		re.Status, re.cause = http.StatusServiceUnavailable, dpop.ErrReplayFull
	case errors.Is(err, dpop.ErrReplayUnavailable):
		re.Status, re.cause = http.StatusServiceUnavailable, dpop.ErrReplayUnavailable
	}
	return re
}

// VerifyHeaders is AuthenticateHeaders without recording the DPoP proof's
// jti: the caller runs its admission checks (rate limit) and then must
// call RecordProof before acting on the request, so that refused requests
// take no replay entries while a replayed proof is still refused before
// anything is forwarded.
func (v *Verifier) VerifyHeaders(r *http.Request) (*Principal, *BodyCheck, error) {
	scheme, token, err := extract(r)
	if err != nil {
		return nil, nil, err
	}
	isDPoP := strings.EqualFold(scheme, "DPoP")
	switch {
	case isDPoP && v.dpop == nil:
		return nil, nil, invalidToken("DPoP-bound tokens are not accepted here; use a Bearer token")
	case !isDPoP && v.o.DPoP == "required":
		return nil, nil, &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "this resource requires DPoP-bound tokens (Authorization: DPoP)", dpopErr: true}
	}
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))) // no copy: Sum256 does not retain
	p, err := v.verifyToken(r.Context(), token, sum)
	if err != nil {
		return nil, nil, err
	}
	if p.JKT != "" && !isDPoP {
		return nil, nil, invalidToken("this token is DPoP-bound: present it with the DPoP scheme and a proof")
	}
	if !isDPoP {
		return p, nil, nil
	}
	if p.JKT == "" {
		return nil, nil, invalidToken("the DPoP scheme needs a DPoP-bound token (cnf.jkt)")
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return nil, nil, &Error{Status: http.StatusUnauthorized, Code: dpop.CodeInvalidProof, Description: "send exactly one DPoP proof header", dpopErr: true}
	}
	proof, err := v.dpop.Check(proofs[0], dpop.Params{
		Method: r.Method, URL: v.origin + r.URL.EscapedPath(), AccessToken: token,
		DeferBody: true, RequireContentDigest: r.Method == http.MethodPost && v.o.DPoPContentDigest == "required",
	})
	if err != nil {
		var de *dpop.Error
		if errors.As(err, &de) {
			return nil, nil, &Error{Status: http.StatusUnauthorized, Code: de.Code, Description: de.Description, Nonce: de.Nonce, dpopErr: true}
		}
		return nil, nil, &Error{Status: http.StatusUnauthorized, Code: dpop.CodeInvalidProof, Description: "the DPoP proof was refused", dpopErr: true}
	}
	if proof.JKT != p.JKT {
		return nil, nil, &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the DPoP proof key does not match the token's cnf.jkt", dpopErr: true}
	}
	return p, &BodyCheck{proof: proof}, nil
}

// extract returns the scheme and token of the single Authorization header.
// Tokens in the query string or a form body are refused (OAuth 2.1 §5.2).
func extract(r *http.Request) (string, string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		if r.URL.Query().Has("access_token") {
			return "", "", invalidRequest("send the access token in the Authorization header, never in the URL")
		}
		return "", "", &Error{Status: http.StatusUnauthorized}
	}
	if len(vals) > 1 {
		return "", "", invalidRequest("send exactly one Authorization header")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return "", "", invalidRequest("the Authorization header must be \"Bearer <token>\" or \"DPoP <token>\"")
	}
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP") {
		return "", "", invalidRequest("authorization scheme " + safeScheme(scheme) + " is not accepted: use Bearer or DPoP")
	}
	if len(token) > 16384 {
		return "", "", invalidToken("the access token is too large")
	}
	return scheme, token, nil
}

func safeScheme(s string) string {
	if len(s) > 20 {
		s = s[:20]
	}
	return fmt.Sprintf("%q", s)
}

// verifyToken returns the principal of a token from the cache or by
// verification. A cache hit re-checks expiry.
func (v *Verifier) verifyToken(ctx context.Context, token string, sum [32]byte) (*Principal, error) {
	now := v.o.Now()
	if p, ok := v.cache.get(sum, now); ok {
		return p, nil
	}
	if _, ok := v.neg.get(sum, now); ok {
		return nil, invalidToken("the access token is not active")
	}
	var (
		p     *Principal
		until time.Time
		err   error
	)
	if looksLikeJWT(token) {
		p, until, err = v.verifyJWT(ctx, token, now)
	} else if len(v.intro) > 0 {
		p, until, err = v.introspect(ctx, token, now)
		if err != nil {
			v.neg.put(sum, nil, now.Add(30*time.Second))
		}
	} else {
		err = invalidToken("the access token is not a JWT and no introspection endpoint is configured")
	}
	if err != nil {
		return nil, err
	}
	p.TokenID = tokenID(sum)
	v.cache.put(sum, p, until)
	return p, nil
}

func looksLikeJWT(t string) bool {
	return strings.Count(t, ".") == 2 && strings.HasPrefix(t, "ey")
}
