package dpop

import (
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// VerifierOptions configure proof verification.
type VerifierOptions struct {
	// Algorithms is the allow-list; default DefaultAlgorithms. Symmetric
	// algorithms and "none" are never accepted, whatever is listed.
	Algorithms []string
	// IATWindow bounds |now - iat|. Default 5 minutes (MCP DPoP profile).
	IATWindow time.Duration
	// Replay tracks jti values; default an in-memory store.
	Replay ReplayStore
	// Nonces, when set, makes a valid server nonce mandatory.
	Nonces NonceSource
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs.
type Verifier struct {
	algs   []jose.SignatureAlgorithm
	names  []string
	window time.Duration
	replay ReplayStore
	nonces NonceSource
	now    func() time.Time
}

// NewVerifier returns a verifier; unknown or symmetric algorithms in
// opts.Algorithms are ignored (config validation reports them).
func NewVerifier(opts VerifierOptions) *Verifier {
	v := &Verifier{window: opts.IATWindow, replay: opts.Replay, nonces: opts.Nonces, now: opts.Now}
	names := opts.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	for _, n := range names {
		if a, ok := asymmetric[n]; ok {
			v.algs = append(v.algs, a)
			v.names = append(v.names, n)
		}
	}
	if v.window == 0 {
		v.window = 5 * time.Minute
	}
	if v.replay == nil {
		v.replay = NewMemoryReplay(100000)
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v
}

// Algorithms returns the accepted algorithm names (for the DPoP challenge
// and dpop_signing_alg_values_supported).
func (v *Verifier) Algorithms() []string { return slices.Clone(v.names) }

// Nonce returns the current server nonce, "" when nonces are off.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Current()
}

// NextNonce returns a fresh nonce to send with a successful response
// (RFC 9449 §8.2: "the server can supply a new nonce value ... in a
// success response") once the nonce p carried is past half its lifetime,
// so that a busy client never runs into use_dpop_nonce; "" otherwise.
func (v *Verifier) NextNonce(p *Proof) string {
	if v.nonces == nil || p == nil || p.NonceUntil.IsZero() {
		return ""
	}
	if p.NonceUntil.Sub(v.now()) > v.nonces.Lifetime()/2 {
		return ""
	}
	return v.nonces.Current()
}

// Params describe the request a proof must match.
type Params struct {
	// Method is the HTTP method (htm).
	Method string
	// URL is the public URL of the request (htu), compared without query.
	URL string
	// AccessToken is the presented token for ath; "" at a token endpoint.
	AccessToken string
	// Body is the request body a present content_digest claim is checked
	// against. With DeferBody the check is left to Proof.CheckBody, so that
	// a proof can be verified from the headers alone, before the body is
	// read (the body is then checked once it has been read).
	Body      []byte
	DeferBody bool
	// RequireContentDigest demands the (pre-SEP-1932-revision) MCP
	// content_digest claim. Off by default: the current DPoP profile uses
	// RFC 9449 "without introducing MCP-specific claims, request body
	// digests, or additional proof material". A present claim is always
	// checked.
	RequireContentDigest bool
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof key.
	JKT string
	JTI string
	IAT time.Time
	// ContentDigest is the proof's content_digest claim, "" when absent.
	ContentDigest string
	// NonceUntil is when the proof's server nonce stops being accepted;
	// zero when nonces are off.
	NonceUntil time.Time
	// Until is how long the jti must be remembered: as long as the proof
	// could be accepted (its iat window, or its nonce's life if shorter).
	Until time.Time
}

// CheckBody verifies a present content_digest claim against body. It is
// the part of Verify that Params.DeferBody postpones.
func (p *Proof) CheckBody(body []byte) error {
	if p.ContentDigest == "" {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(p.ContentDigest), []byte(ContentDigest(body))) != 1 {
		return invalid("the DPoP proof content_digest does not match the request body")
	}
	return nil
}

// Verify checks proof against p (RFC 9449 §4.3 plus the MCP profile) and
// records its jti (Check, then Record with no owner).
func (v *Verifier) Verify(proof string, p Params) (*Proof, error) {
	pr, err := v.Check(proof, p)
	if err != nil {
		return nil, err
	}
	if err := v.Record(context.Background(), "", pr); err != nil {
		return nil, err
	}
	return pr, nil
}

// Record remembers the jti of a checked proof until pr.Until, charged to
// owner (the token's issuer and subject at a resource, the client at a
// token endpoint) when the store keeps shares. A proof seen before is
// refused with invalid_dpop_proof. A full store or a full share of owner
// returns an error wrapping ErrReplayFull or ErrReplayShareFull (also an
// *Error, invalid_dpop_proof), so that a caller can answer 503 or 429; a
// shared store that could not answer one wrapping ErrReplayUnavailable
// (503, never accepted).
// Nothing the proof authorizes may happen before Record succeeded.
func (v *Verifier) Record(ctx context.Context, owner string, pr *Proof) error {
	key := pr.JKT + ":" + pr.JTI
	var seen bool
	var err error
	if os, ok := v.replay.(OwnedReplayStore); ok {
		seen, err = os.SeenBy(ctx, owner, key, pr.Until)
	} else {
		seen, err = v.replay.Seen(ctx, key, pr.Until)
	}
	switch {
	case errors.Is(err, ErrReplayShareFull):
		return &replayError{invalid("too many DPoP proofs from this caller are still within their replay window; retry later"), ErrReplayShareFull}
	case errors.Is(err, ErrReplayUnavailable):
		return &replayError{invalid("the DPoP proof could not be checked for replay: shared state (Redis) unavailable; retry"), ErrReplayUnavailable}
	case err != nil:
		return &replayError{invalid("the DPoP proof could not be checked for replay; retry"), ErrReplayFull}
	case seen:
		return invalid("the DPoP proof was already used (jti replay)")
	}
	return nil
}

// replayError is an *Error that also matches the store's sentinel.
type replayError struct {
	de    *Error
	cause error
}

func (e *replayError) Error() string   { return e.de.Error() }
func (e *replayError) Unwrap() []error { return []error{e.de, e.cause} }

// Check verifies proof against p (RFC 9449 §4.3 plus the MCP profile)
// without recording its jti: the caller must Record it before acting on
// the request (after its own admission checks, such as a rate limit, so
// that refused requests do not take replay entries). The steps run in
// this order, so the first failing check names the error.
func (v *Verifier) Check(proof string, p Params) (*Proof, error) {
	jwk, payload, err := v.signedBy(proof)
	if err != nil {
		return nil, err
	}
	c, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	iat, err := v.checkRequest(c, p)
	if err != nil {
		return nil, err
	}
	digest, err := checkDigest(c, p)
	if err != nil {
		return nil, err
	}
	nonceUntil, remember, err := v.checkNonce(c, iat)
	if err != nil {
		return nil, err
	}
	jkt, err := Thumbprint(jwk.Key)
	if err != nil {
		return nil, invalid("the DPoP proof key type is not supported")
	}
	return &Proof{JKT: jkt, JTI: c.JTI, IAT: iat, ContentDigest: digest, NonceUntil: nonceUntil, Until: remember}, nil
}

// signedBy parses the compact proof, checks its header (typ, an embedded
// public jwk of bounded cost) and verifies its signature with that key,
// returning the key and the signed payload.
func (v *Verifier) signedBy(proof string) (*jose.JSONWebKey, []byte, error) {
	if proof == "" {
		return nil, nil, invalid("the DPoP header is missing")
	}
	if len(proof) > 8192 {
		return nil, nil, invalid("the DPoP proof is too large")
	}
	if err := checkHeader(proof); err != nil {
		return nil, nil, err
	}
	jws, err := jose.ParseSignedCompact(proof, v.algs)
	if err != nil {
		return nil, nil, invalid("the DPoP proof is not a JWS signed with an accepted algorithm (%s)", joinNames(v.names))
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, invalid("the DPoP proof must have exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "dpop+jwt" {
		return nil, nil, invalid("the DPoP proof typ must be dpop+jwt")
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() {
		return nil, nil, invalid("the DPoP proof header must embed the public key as jwk")
	}
	if !jwk.IsPublic() {
		return nil, nil, invalid("the DPoP proof jwk must not contain private key material")
	}
	// Bound the work an attacker-chosen key can cause: RSA keys of 2048 to
	// 4096 bits with a small public exponent only.
	if rk, ok := jwk.Key.(*rsa.PublicKey); ok && (rk.N.BitLen() < 2048 || rk.N.BitLen() > 4096 || rk.E > 1<<17+1) {
		return nil, nil, invalid("the DPoP proof RSA key must have 2048 to 4096 bits and a small public exponent")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, nil, invalid("the DPoP proof signature does not verify with its jwk")
	}
	return jwk, payload, nil
}

// checkRequest binds the claims to this request: a jti, the method (htm),
// the URL (htu), the clock (iat within the window) and the access token
// (ath). It returns the proof's iat.
func (v *Verifier) checkRequest(c *claims, p Params) (time.Time, error) {
	if c.JTI == "" || len(c.JTI) > 256 {
		return time.Time{}, invalid("the DPoP proof needs a jti")
	}
	if c.HTM != p.Method {
		return time.Time{}, invalid("the DPoP proof htm does not match the request method")
	}
	want, err1 := normalizeURL(p.URL)
	got, err2 := normalizeURL(c.HTU)
	if err1 != nil || err2 != nil || want != got {
		return time.Time{}, invalid("the DPoP proof htu does not match the request URL")
	}
	iat := time.Unix(c.IAT, 0)
	now := v.now()
	if iat.Before(now.Add(-v.window)) || iat.After(now.Add(v.window)) {
		return time.Time{}, invalid("the DPoP proof iat is outside the accepted window; check the client clock")
	}
	if p.AccessToken != "" {
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(ATH(p.AccessToken))) != 1 {
			return time.Time{}, invalid("the DPoP proof ath does not match the access token")
		}
	}
	return iat, nil
}

// checkDigest checks a present content_digest claim (against the body
// unless p.DeferBody) and demands one when p.RequireContentDigest. It
// returns the claim, "" when absent.
func checkDigest(c *claims, p Params) (string, error) {
	digest := ""
	if c.Digest != nil {
		// A present claim is always checked, so an empty one cannot mean
		// "no claim": it can never match a digest.
		if digest = *c.Digest; digest == "" {
			return "", invalid("the DPoP proof content_digest is empty")
		}
	} else if p.RequireContentDigest {
		return "", invalid("the DPoP proof needs a content_digest claim over the request body (dpop_content_digest: required)")
	}
	if digest != "" && !p.DeferBody {
		if err := (&Proof{ContentDigest: digest}).CheckBody(p.Body); err != nil {
			return "", err
		}
	}
	return digest, nil
}

// checkNonce checks the server nonce when nonces are on and returns when it
// expires and how long the jti must be remembered.
func (v *Verifier) checkNonce(c *claims, iat time.Time) (nonceUntil, remember time.Time, err error) {
	// The jti must be remembered as long as the proof could be accepted:
	// until iat + window (the iat check refuses it after that; one second
	// more for the store's expiry being exclusive), or, with server nonces,
	// until its nonce expires, whichever ends first (so a replica's jti
	// store stays bounded by the nonce lifetime).
	remember = iat.Add(v.window + time.Second)
	if v.nonces == nil {
		return time.Time{}, remember, nil
	}
	ok := false
	if c.Nonce != nil {
		nonceUntil, ok = v.nonces.Check(*c.Nonce)
	}
	if !ok {
		return time.Time{}, time.Time{}, &Error{Code: CodeUseNonce, Description: "use the DPoP nonce from the DPoP-Nonce header", Nonce: v.nonces.Current()}
	}
	if nonceUntil.Before(remember) {
		remember = nonceUntil
	}
	return nonceUntil, remember, nil
}

func joinNames(n []string) string {
	out := ""
	for i, s := range n {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}
