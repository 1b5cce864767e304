package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// introspector calls an issuer's RFC 7662 endpoint, authenticated with
// client_secret_basic.
type introspector struct {
	k        *issuerKeys
	clientID string
	secret   string
	ttl      time.Duration
}

func newIntrospector(k *issuerKeys, getenv func(string) string) (*introspector, error) {
	in := k.cfg.Introspection
	secret, err := config.ReadSecret("client_secret_env", in.ClientSecretEnv, "client_secret_file", in.ClientSecretFile, getenv)
	if err != nil {
		return nil, err
	}
	ttl := in.CacheTTL.Duration
	if ttl == 0 {
		ttl = time.Minute
	}
	return &introspector{k: k, clientID: in.ClientID, secret: secret, ttl: ttl}, nil
}

// introspect asks each configured issuer in turn; the first that knows the
// token as active decides.
func (v *Verifier) introspect(ctx context.Context, token string, now time.Time) (*Principal, time.Time, error) {
	var lastErr error = invalidToken("the access token is not active")
	for _, in := range v.intro {
		claims, err := in.call(ctx, token)
		if err != nil {
			v.o.Logger.Warn("introspection failed", "issuer", in.k.cfg.Issuer, "err", err)
			lastErr = &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token could not be checked right now; retry"}
			continue
		}
		if active, _ := claims["active"].(bool); !active {
			continue
		}
		if err := accessTokenOnly(claims); err != nil {
			// The issuer knows the token and says it is no access token
			// (a refresh token, an ID token …): refused, never cached as
			// a principal.
			return nil, time.Time{}, err
		}
		if _, ok := claims["iss"]; !ok {
			claims["iss"] = in.k.cfg.Issuer
		}
		p, until, err := v.checkClaims(in.k, claims, now)
		if err != nil {
			return nil, time.Time{}, err
		}
		if lim := now.Add(in.ttl); lim.Before(until) {
			until = lim
		}
		return p, until, nil
	}
	return nil, time.Time{}, lastErr
}

func (in *introspector) call(ctx context.Context, token string) (map[string]any, error) {
	endpoint := in.k.introspectionEndpoint()
	if endpoint == "" {
		return nil, errors.New("no introspection endpoint known yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret))
	resp, err := in.k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspection request failed: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("introspection endpoint answered %d", resp.StatusCode)
	}
	var m map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(&m); err != nil {
		return nil, fmt.Errorf("introspection answer is not JSON")
	}
	return m, nil
}

// accessTokenOnly refuses an active introspection answer that describes
// something other than an access token. RFC 7662 §2.2 token_type is the
// access token type (RFC 6749 §7.1: "Bearer", "DPoP", …); servers also put
// the kind of token there ("refresh_token", Keycloak's "Refresh", RFC 8693
// token type URIs) or in token_use (Cognito, Hydra). Anything that names a
// kind of token other than an access token is refused, and so is a
// token_type the gateway does not know: fail closed.
func accessTokenOnly(c map[string]any) error {
	if raw, ok := c["token_type"]; ok {
		tt, isStr := raw.(string)
		switch strings.ToLower(tt) {
		case "bearer", "dpop", "access_token", "access", "urn:ietf:params:oauth:token-type:access_token":
		default:
			if !isStr {
				return invalidToken("the introspection answer's token_type is not a string")
			}
			return invalidToken("the token is not an access token (introspection token_type %s)", safeScheme(tt))
		}
	}
	if raw, ok := c["token_use"]; ok {
		tu, _ := raw.(string)
		if !strings.EqualFold(tu, "access") && !strings.EqualFold(tu, "access_token") {
			return invalidToken("the token is not an access token (introspection token_use %s)", safeScheme(tu))
		}
	}
	if tt, _ := c["token_type"].(string); strings.EqualFold(tt, "DPoP") {
		// A DPoP token whose binding the answer does not carry cannot be
		// checked against a proof: refused rather than accepted as a
		// bearer token (checkClaims then refuses a malformed cnf).
		if cnf, _ := c["cnf"].(map[string]any); cnf == nil {
			return invalidToken("the introspection answer says DPoP but carries no cnf.jkt binding")
		}
	}
	return nil
}
