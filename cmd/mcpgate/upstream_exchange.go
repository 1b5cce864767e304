package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/oauth"
)

// tokenExchangers builds the gateway's RFC 8693 exchangers
// (upstream_auth.token_exchange) with the client engine, which the
// gateway may not import. The identity provider is the operator's choice,
// so every address class is allowed; plain http only on loopback.
func tokenExchangers(getenv func(string) string, log *slog.Logger) gateway.NewTokenExchanger {
	return func(upstream string, c *config.TokenExchange) (gateway.TokenExchanger, error) {
		key := fmt.Sprintf("upstream %s: upstream_auth.token_exchange.", upstream)
		client := oauth.Client{ID: c.ClientID, AuthMethod: c.Method()}
		if c.ClientSecretEnv != "" || c.ClientSecretFile != "" {
			secret, err := config.ReadSecret(key+"client_secret_env", c.ClientSecretEnv, key+"client_secret_file", c.ClientSecretFile, getenv)
			if err != nil {
				return nil, err
			}
			client.Secret = secret
		}
		if c.ClientKeyFile != "" {
			k, err := readPrivateKey(c.ClientKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%sclient_key_file: %w", key, err)
			}
			client.Key, client.KeyID = k, c.ClientKeyID
		}
		target := c.Issuer
		if target == "" {
			target = c.TokenEndpoint
		}
		engine := oauth.NewEngine(oauth.NewGuard(target, false, true), nil, log.With("upstream", upstream))
		x, err := oauth.NewExchanger(engine, oauth.ExchangerConfig{Issuer: c.Issuer, TokenEndpoint: c.TokenEndpoint, Client: client,
			Request: oauth.ExchangeRequest{Resource: c.Resource, Audience: c.Audience, Scopes: c.Scopes, RequestedTokenType: c.RequestedTokenType}})
		if err != nil {
			return nil, err
		}
		return exchanger{x}, nil
	}
}

// exchanger adapts an oauth.Exchanger to the gateway's TokenExchanger:
// the token endpoint's error fields become a gateway.ExchangeError.
type exchanger struct{ x *oauth.Exchanger }

func (a exchanger) Exchange(ctx context.Context, subject string) (gateway.ExchangedToken, error) {
	t, err := a.x.Exchange(ctx, subject)
	if err != nil {
		var te *oauth.TokenError
		if errors.As(err, &te) {
			return gateway.ExchangedToken{}, &gateway.ExchangeError{Code: te.Code, Description: te.Description, Status: te.Status, Transient: te.Transient(), Err: te}
		}
		return gateway.ExchangedToken{}, &gateway.ExchangeError{Transient: oauth.IsTransient(err), Err: err}
	}
	return gateway.ExchangedToken{Value: t.AccessToken, Expiry: t.Expiry}, nil
}
