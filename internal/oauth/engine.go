package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// Engine performs the client-side OAuth protocol steps. It keeps no
// credentials: callers pass them in and store what comes back.
type Engine struct {
	HTTP  *http.Client
	Guard *Guard
	// ProtocolVersion is sent as MCP-Protocol-Version on metadata requests.
	ProtocolVersion string
	Log             *slog.Logger
	Now             func() time.Time

	mu     sync.Mutex        // guards nonces
	nonces map[string]string // DPoP nonce per authorization server origin
}

// NewEngine builds an engine whose HTTP client enforces guard on every
// connection and redirect hop. base may carry a custom TLS config or
// proxy; nil uses a clone of http.DefaultTransport.
func NewEngine(guard *Guard, base *http.Transport, log *slog.Logger) *Engine {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	base.DialContext = guard.dialer().DialContext
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := &http.Client{
		Transport: base,
		Timeout:   30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return guard.CheckURL(req.URL.String(), "redirect target")
		},
	}
	return &Engine{HTTP: client, Guard: guard, Log: log, Now: time.Now}
}

// credentialHTTP is the client of every request to an authorization
// server endpoint that carries a credential or is one (token, PAR,
// device authorization, revocation, registration): client secrets in
// Authorization or the form, client assertions, DPoP proofs, codes,
// refresh tokens. net/http copies Authorization (when the host name stays)
// and DPoP (always) onto every redirect hop, and the hop's answer would
// be taken as the endpoint's. So such a request follows a redirect only
// when it stays on the endpoint's origin (origin.Pin) and keeps its method
// and body (307/308; a 301/302/303 would turn the POST into a GET without
// the grant, whose answer is not the endpoint's answer). Metadata GETs
// carry none of this and use e.HTTP; what they return is checked instead
// (issuer, resource).
func (e *Engine) credentialHTTP() *http.Client {
	c := *e.HTTP
	prev := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if first := via[0]; req.Method != first.Method {
			return fmt.Errorf("%w: %s answered a %s with a redirect that makes it a %s; refusing to follow it",
				origin.ErrOther, origin.Of(first.URL), first.Method, req.Method)
		}
		if prev != nil {
			return prev(req, via)
		}
		return nil
	}
	return origin.Pin(&c)
}

// Client is a registered OAuth client.
type Client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret,omitempty"`
	// AuthMethod: none, client_secret_basic, client_secret_post,
	// private_key_jwt.
	AuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Kind: preregistered, cimd, dcr.
	Kind         string   `json:"kind,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// Issuer the registration belongs to (never used with another).
	Issuer    string    `json:"issuer,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Key signs private_key_jwt assertions (never stored by the engine).
	Key   crypto.Signer `json:"-"`
	KeyID string        `json:"-"`
}

// Token is a token response.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	Scopes       []string  `json:"scopes,omitempty"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`
	IDToken      string    `json:"-"`
}

// Stale reports whether the token should be renewed before use: it
// expires within maxSkew, or within a quarter of its lifetime for
// short-lived tokens (a 5-second token is not renewed on every use).
func (t *Token) Stale(now time.Time, maxSkew time.Duration) bool {
	skew := maxSkew
	if !t.IssuedAt.IsZero() && !t.Expiry.IsZero() {
		skew = min(skew, t.Expiry.Sub(t.IssuedAt)/4)
	}
	return t.Expired(now, skew)
}

// Expired reports whether the access token expires within skew.
func (t *Token) Expired(now time.Time, skew time.Duration) bool {
	return t == nil || t.AccessToken == "" || (!t.Expiry.IsZero() && now.Add(skew).After(t.Expiry))
}

// DPoP reports whether the token is DPoP-bound.
func (t *Token) DPoP() bool { return strings.EqualFold(t.TokenType, "DPoP") }

// TokenError is an OAuth error response (RFC 6749 §5.2) or a transport
// failure at an authorization server endpoint.
type TokenError struct {
	Endpoint    string
	Status      int // 0: no HTTP response
	Code        string
	Description string
	Err         error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString(e.Endpoint)
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, ": %s", e.Code)
		if e.Description != "" {
			fmt.Fprintf(&b, " (%s)", e.Description)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	default:
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.Err }

// Transient reports a failure that must not cost the user their stored
// credentials: network errors, 5xx, temporarily_unavailable,
// server_error, rate limiting.
func (e *TokenError) Transient() bool {
	return e.Status == 0 || e.Status >= 500 || e.Status == http.StatusTooManyRequests ||
		e.Code == "temporarily_unavailable" || e.Code == "server_error" || e.Code == "slow_down"
}

// IsTransient reports whether err is a transient token endpoint failure
// (or a context deadline, which also says nothing about the credential).
func IsTransient(err error) bool {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Transient()
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// IsInvalidGrant reports an invalid_grant answer (the refresh token or
// code is no longer valid: a new login is needed).
func IsInvalidGrant(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "invalid_grant"
}

// IsInvalidClient reports an invalid_client (or unauthorized_client)
// answer: the registration is gone and must be redone.
func IsInvalidClient(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && (te.Code == "invalid_client" || te.Code == "unauthorized_client")
}

func (e *Engine) nonce(endpoint string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nonces[originOf(endpoint)]
}

func (e *Engine) setNonce(endpoint, n string) {
	if n == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.nonces == nil {
		e.nonces = map[string]string{}
	}
	e.nonces[originOf(endpoint)] = n
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// clientAssertion makes a private_key_jwt assertion (RFC 7523): iss = sub
// = client_id, aud = the issuer (FAPI 2.0), short-lived, unique jti.
func (e *Engine) clientAssertion(c *Client, issuer string) (string, error) {
	alg, err := signingAlg(c.Key)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if c.KeyID != "" {
		opts = opts.WithHeader("kid", c.KeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: c.Key}, opts)
	if err != nil {
		return "", err
	}
	now := e.Now()
	claims := jwt.Claims{
		Issuer: c.ID, Subject: c.ID, Audience: jwt.Audience{issuer},
		ID: randomString(16), IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)), Expiry: jwt.NewNumericDate(now.Add(60 * time.Second)),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func signingAlg(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.PS256, nil
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("unsupported private_key_jwt key type %T", k.Public())
}

// authenticate adds client authentication to a token-endpoint style
// request form per the client's method.
func (e *Engine) authenticate(req *http.Request, form url.Values, c *Client, issuer string) error {
	switch c.AuthMethod {
	case "client_secret_basic":
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	case "client_secret_post":
		form.Set("client_id", c.ID)
		form.Set("client_secret", c.Secret)
	case "private_key_jwt":
		if c.Key == nil {
			return errors.New("private_key_jwt needs a private key (--client-key-file)")
		}
		a, err := e.clientAssertion(c, issuer)
		if err != nil {
			return err
		}
		form.Set("client_id", c.ID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", a)
	default: // none
		form.Set("client_id", c.ID)
	}
	return nil
}

// post sends a form to an AS endpoint with client authentication and, when
// key is set, a DPoP proof (retried once with the server's nonce on
// use_dpop_nonce). It decodes a 2xx JSON answer into out.
func (e *Engine) post(ctx context.Context, endpoint, what string, as *ServerMetadata, c *Client, form url.Values, key *DPoPKey, out any) (http.Header, error) {
	if err := e.Guard.CheckURL(endpoint, what); err != nil {
		return nil, &TokenError{Endpoint: what, Err: err}
	}
	for attempt := 0; ; attempt++ {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
		if err != nil {
			return nil, &TokenError{Endpoint: what, Err: err}
		}
		if c != nil {
			if err := e.authenticate(req, f, c, as.Issuer); err != nil {
				return nil, &TokenError{Endpoint: what, Err: err}
			}
		}
		body := f.Encode()
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if key != nil {
			proof, err := key.Proof(http.MethodPost, endpoint, dpop.ProofOptions{Nonce: e.nonce(endpoint)})
			if err != nil {
				return nil, &TokenError{Endpoint: what, Err: err}
			}
			req.Header.Set("DPoP", proof)
		}
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
		resp, err := e.credentialHTTP().Do(req)
		if err != nil {
			return nil, &TokenError{Endpoint: what, Err: err}
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
		resp.Body.Close()
		if err != nil {
			return nil, &TokenError{Endpoint: what, Status: resp.StatusCode, Err: err}
		}
		e.setNonce(endpoint, resp.Header.Get("DPoP-Nonce"))
		if resp.StatusCode/100 == 2 {
			if out != nil {
				if err := json.Unmarshal(raw, out); err != nil {
					return nil, &TokenError{Endpoint: what, Status: resp.StatusCode, Err: fmt.Errorf("the answer is not JSON: %v", err)}
				}
			}
			return resp.Header, nil
		}
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &oe)
		if oe.Error == "" && resp.StatusCode == http.StatusUnauthorized {
			oe.Error = "invalid_client"
		}
		if oe.Error == "use_dpop_nonce" && key != nil && attempt == 0 && resp.Header.Get("DPoP-Nonce") != "" {
			continue
		}
		return nil, &TokenError{Endpoint: what, Status: resp.StatusCode, Code: oe.Error, Description: oe.Description}
	}
}

type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.Number     `json:"expires_in"`
	Scope        string          `json:"scope"`
	IDToken      string          `json:"id_token"`
	Raw          json.RawMessage `json:"-"`
}

// TokenRequest posts a grant to the token endpoint and validates the
// answer: an access token, a known token_type, and a DPoP-bound token when
// a proof was sent (a Bearer answer to a DPoP request is refused, since
// the token would travel without its binding). requested are the scopes
// asked for, recorded when the AS does not say which it granted.
func (e *Engine) TokenRequest(ctx context.Context, as *ServerMetadata, c *Client, form url.Values, key *DPoPKey, requested []string) (*Token, error) {
	var tr tokenResponse
	if _, err := e.post(ctx, as.TokenEndpoint, "token endpoint", as, c, form, key, &tr); err != nil {
		return nil, err
	}
	if tr.AccessToken == "" {
		return nil, &TokenError{Endpoint: "token endpoint", Status: 200, Err: errors.New("the answer has no access_token")}
	}
	switch {
	case strings.EqualFold(tr.TokenType, "Bearer"):
		if key != nil {
			return nil, &TokenError{Endpoint: "token endpoint", Status: 200, Err: errors.New(`a DPoP proof was sent but the token_type is "Bearer": the authorization server ignored DPoP; refusing an unbound token (pass --dpop=off to use bearer tokens)`)}
		}
		tr.TokenType = "Bearer"
	case strings.EqualFold(tr.TokenType, "DPoP"):
		if key == nil {
			return nil, &TokenError{Endpoint: "token endpoint", Status: 200, Err: errors.New(`token_type "DPoP" without a DPoP proof`)}
		}
		tr.TokenType = "DPoP"
	default:
		return nil, &TokenError{Endpoint: "token endpoint", Status: 200, Err: fmt.Errorf("unsupported token_type %q", tr.TokenType)}
	}
	t := &Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, RefreshToken: tr.RefreshToken, IDToken: tr.IDToken, IssuedAt: e.Now()}
	if n, err := tr.ExpiresIn.Int64(); err == nil && n > 0 {
		t.Expiry = e.Now().Add(time.Duration(n) * time.Second)
	}
	if tr.Scope != "" {
		t.Scopes = strings.Fields(tr.Scope)
	} else {
		t.Scopes = requested
	}
	return t, nil
}

// Refresh redeems a refresh token. The new token keeps the old refresh
// token when the AS does not rotate it.
func (e *Engine) Refresh(ctx context.Context, as *ServerMetadata, c *Client, old *Token, resource string, key *DPoPKey) (*Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.RefreshToken}}
	if resource != "" {
		form.Set("resource", resource)
	}
	t, err := e.TokenRequest(ctx, as, c, form, key, old.Scopes)
	if err != nil {
		return nil, err
	}
	if t.RefreshToken == "" {
		t.RefreshToken = old.RefreshToken
	}
	return t, nil
}

// ClientCredentials runs the client credentials grant.
func (e *Engine) ClientCredentials(ctx context.Context, as *ServerMetadata, c *Client, scopes []string, resource string, key *DPoPKey) (*Token, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	return e.TokenRequest(ctx, as, c, form, key, scopes)
}

// Revoke revokes a token (RFC 7009). It is a no-op without an endpoint.
func (e *Engine) Revoke(ctx context.Context, as *ServerMetadata, c *Client, token, hint string) error {
	if as.RevocationEndpoint == "" {
		return nil
	}
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	_, err := e.post(ctx, as.RevocationEndpoint, "revocation endpoint", as, c, form, nil, nil)
	return err
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// pkce returns an S256 verifier and challenge (RFC 7636).
func pkce() (verifier, challenge string) {
	verifier = randomString(32)
	h := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(h[:])
}

// equalConstantTime compares secrets without leaking their length-prefix
// through timing.
func equalConstantTime(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// postJSON posts a JSON document (registration) and decodes the answer.
func (e *Engine) postJSON(ctx context.Context, endpoint, what string, body []byte, out any) error {
	if err := e.Guard.CheckURL(endpoint, what); err != nil {
		return &TokenError{Endpoint: what, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(string(body)))
	if err != nil {
		return &TokenError{Endpoint: what, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := e.credentialHTTP().Do(req)
	if err != nil {
		return &TokenError{Endpoint: what, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	if err != nil {
		return &TokenError{Endpoint: what, Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &oe)
		return &TokenError{Endpoint: what, Status: resp.StatusCode, Code: oe.Error, Description: oe.Description}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &TokenError{Endpoint: what, Status: resp.StatusCode, Err: fmt.Errorf("the answer is not JSON: %v", err)}
	}
	return nil
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
