package oauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// The authorization code flow in two halves, for a server whose own HTTP
// endpoint receives the redirect (the gateway's connected accounts): the
// first half builds the authorization URL and returns what the callback
// must be checked against; the second checks the callback (state in
// constant time, RFC 9207 iss, error) and redeems the code with the PKCE
// verifier. The same steps as AuthorizationCode, without a listener or a
// waiting goroutine: the pending half can be stored between two requests.

// PendingAuthorization is an authorization request waiting for its
// callback. State and Verifier are secrets of the flow: keep them on the
// server, never in a URL other than the authorization URL itself.
type PendingAuthorization struct {
	URL         string `json:"-"`
	State       string `json:"state"`
	Verifier    string `json:"verifier"`
	RedirectURI string `json:"redirect_uri"`
}

// BeginAuthorization starts an authorization code flow with PKCE S256
// (and PAR, DPoP key binding and extra parameters as ar says) whose
// redirect goes to redirectURI.
func (e *Engine) BeginAuthorization(ctx context.Context, ar *AuthRequest, redirectURI string) (*PendingAuthorization, error) {
	as := ar.Discovery.AS
	if !as.Legacy && !slices.Contains(as.CodeChallengeMethods, "S256") {
		return nil, fmt.Errorf("the authorization server %s does not advertise PKCE S256 (code_challenge_methods_supported=%v); the MCP specification forbids proceeding", as.Issuer, as.CodeChallengeMethods)
	}
	verifier, challenge := pkce()
	state := randomString(32)
	u, err := e.authorizationURL(ctx, ar, redirectURI, state, challenge)
	if err != nil {
		return nil, err
	}
	return &PendingAuthorization{URL: u, State: state, Verifier: verifier, RedirectURI: redirectURI}, nil
}

// ErrWrongState: the callback's state is not the flow's (a stray or forged
// request; the flow is not ended by it).
var ErrWrongState = errors.New("the authorization response has a missing or wrong state; ignoring it (possible CSRF)")

// FinishAuthorization checks the callback query q against p and redeems
// the code at the token endpoint.
func (e *Engine) FinishAuthorization(ctx context.Context, ar *AuthRequest, p *PendingAuthorization, q url.Values) (*Token, error) {
	if !equalConstantTime(q.Get("state"), p.State) {
		return nil, ErrWrongState
	}
	if err := checkCallback(q, p.State, ar.Discovery.AS); err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {q.Get("code")},
		"redirect_uri":  {p.RedirectURI},
		"code_verifier": {p.Verifier},
	}
	if !ar.NoResource {
		form.Set("resource", ar.Discovery.Resource)
	}
	return e.TokenRequest(ctx, ar.Discovery.AS, ar.Client, form, ar.DPoP, ar.Scopes)
}

// MarshalDPoPKey is k in the form records keep (PKCS#8).
func MarshalDPoPKey(k *DPoPKey) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k.Key) }

// ParseDPoPKey reads a key MarshalDPoPKey wrote.
func ParseDPoPKey(der []byte) (*DPoPKey, error) { return parseDPoPKey(der) }
