package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// RFC 8693 (OAuth 2.0 Token Exchange, January 2020) identifiers.
const (
	// GrantTokenExchange is the grant_type of a token exchange request (§2.1).
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken: "an OAuth 2.0 access token issued by the given
	// authorization server" (§3).
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeJWT: "the token is a JWT" (§3).
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// MaxExchangedTokenBytes bounds an issued token: it travels in a header
// of every upstream request and is kept in memory per caller.
const MaxExchangedTokenBytes = 16 << 10

// ExchangeRequest is an RFC 8693 §2.1 token exchange request.
type ExchangeRequest struct {
	// SubjectToken is "a security token that represents the identity of
	// the party on behalf of whom the request is being made"; never
	// logged or put into an error.
	SubjectToken string
	// SubjectTokenType defaults to TokenTypeAccessToken.
	SubjectTokenType string
	// Resource (RFC 8707) and Audience name the target service; either,
	// both or none.
	Resource, Audience string
	Scopes             []string
	// RequestedTokenType defaults to TokenTypeAccessToken.
	RequestedTokenType string
}

// ExchangedToken is the answer to a token exchange (§2.2.1).
type ExchangedToken struct {
	// AccessToken is the issued token (whatever its type: §2.2.1 names
	// the member access_token "for historical reasons").
	AccessToken string
	// IssuedTokenType is "an identifier ... for the representation of the
	// issued security token" (REQUIRED in the answer).
	IssuedTokenType string
	// TokenType is "Bearer", or "N_A" when the issued token is not an
	// access token (§2.2.1).
	TokenType string
	// Expiry is zero when the server did not say (expires_in).
	Expiry time.Time
	Scopes []string
}

// Exchange posts a token exchange request to the token endpoint of as,
// authenticating as c (none, client_secret_basic, client_secret_post or
// private_key_jwt, as for every other grant), and validates the answer
// (ParseExchangeResponse). An OAuth error answer is a *TokenError whose
// Code is the server's (invalid_request, invalid_target, invalid_scope,
// unauthorized_client, ...). No DPoP proof is sent: the issued token is
// presented by the gateway in a header, and a DPoP-bound one would need a
// proof per upstream request (docs/upstream-identity.md).
func (e *Engine) Exchange(ctx context.Context, as *ServerMetadata, c *Client, r ExchangeRequest) (*ExchangedToken, error) {
	form, err := exchangeForm(r)
	if err != nil {
		return nil, &TokenError{Endpoint: "token endpoint", Err: err}
	}
	var raw json.RawMessage
	if _, err := e.post(ctx, as.TokenEndpoint, "token endpoint", as, c, form, nil, &raw); err != nil {
		return nil, err
	}
	t, err := ParseExchangeResponse(raw, form.Get("requested_token_type"), e.Now())
	if err != nil {
		return nil, &TokenError{Endpoint: "token endpoint", Status: 200, Err: err}
	}
	if len(t.Scopes) == 0 {
		t.Scopes = r.Scopes
	}
	return t, nil
}

// exchangeForm is the request body of r (§2.1).
func exchangeForm(r ExchangeRequest) (url.Values, error) {
	if r.SubjectToken == "" {
		return nil, errors.New("no subject token to exchange")
	}
	form := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {r.SubjectToken},
		"subject_token_type":   {or(r.SubjectTokenType, TokenTypeAccessToken)},
		"requested_token_type": {or(r.RequestedTokenType, TokenTypeAccessToken)}}
	if r.Resource != "" {
		form.Set("resource", r.Resource)
	}
	if r.Audience != "" {
		form.Set("audience", r.Audience)
	}
	if len(r.Scopes) > 0 {
		form.Set("scope", strings.Join(r.Scopes, " "))
	}
	return form, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exchangeResponse is the JSON of §2.2.1.
type exchangeResponse struct {
	AccessToken     string      `json:"access_token"`
	IssuedTokenType string      `json:"issued_token_type"`
	TokenType       string      `json:"token_type"`
	ExpiresIn       json.Number `json:"expires_in"`
	Scope           string      `json:"scope"`
}

// ParseExchangeResponse validates a successful token exchange answer: an
// issued token that can be sent in an HTTP header as it is (visible ASCII,
// at most MaxExchangedTokenBytes), issued_token_type present and the one
// requested (requested "" accepts an access token or a JWT), token_type
// "Bearer" or "N_A" — a "DPoP" token is refused, since no proof key was
// sent — and a positive expires_in when present.
func ParseExchangeResponse(raw []byte, requested string, now time.Time) (*ExchangedToken, error) {
	var r exchangeResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("the token exchange answer is not a JSON object: %v", err)
	}
	if err := headerSafeToken(r.AccessToken); err != nil {
		return nil, err
	}
	switch {
	case r.IssuedTokenType == "":
		return nil, errors.New("the token exchange answer has no issued_token_type (RFC 8693 §2.2.1 requires it)")
	case requested != "" && r.IssuedTokenType != requested:
		return nil, fmt.Errorf("the token exchange answer is a %q, not the requested %q", r.IssuedTokenType, requested)
	case requested == "" && r.IssuedTokenType != TokenTypeAccessToken && r.IssuedTokenType != TokenTypeJWT:
		return nil, fmt.Errorf("the token exchange answer is a %q: only an access token or a JWT can be sent upstream", r.IssuedTokenType)
	}
	t := &ExchangedToken{AccessToken: r.AccessToken, IssuedTokenType: r.IssuedTokenType, Scopes: strings.Fields(r.Scope)}
	switch {
	case strings.EqualFold(r.TokenType, "Bearer"):
		t.TokenType = "Bearer"
	case strings.EqualFold(r.TokenType, "N_A"):
		t.TokenType = "N_A"
	case strings.EqualFold(r.TokenType, "DPoP"):
		return nil, errors.New(`the token exchange answer is a DPoP-bound token, but no DPoP proof was sent: configure the identity provider to issue Bearer tokens to this client`)
	default:
		return nil, fmt.Errorf("the token exchange answer has token_type %q: expected Bearer or N_A", clip(r.TokenType, 20))
	}
	if r.ExpiresIn != "" {
		n, err := r.ExpiresIn.Int64()
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("the token exchange answer has expires_in %q: expected a positive number of seconds", clip(string(r.ExpiresIn), 20))
		}
		t.Expiry = now.Add(time.Duration(min(n, 1<<31)) * time.Second)
	}
	return t, nil
}

// headerSafeToken: the issued token goes into an upstream request header,
// so it must be non-empty, bounded and made of visible ASCII (RFC 6750
// b64token and every JWT are), never CR, LF or other bytes that could
// change the header's meaning.
func headerSafeToken(t string) error {
	if t == "" {
		return errors.New("the token exchange answer has no access_token")
	}
	if len(t) > MaxExchangedTokenBytes {
		return fmt.Errorf("the issued token is %d bytes, more than the %d mcpgate sends upstream", len(t), MaxExchangedTokenBytes)
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return errors.New("the issued token holds a byte that cannot be sent in an HTTP header (space, control or non-ASCII)")
		}
	}
	return nil
}

// clip shortens server-chosen text quoted in an error.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
