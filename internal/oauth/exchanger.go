package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ExchangerConfig says where and as which client callers' tokens are
// exchanged (RFC 8693), and for what.
type ExchangerConfig struct {
	// Issuer is the identity provider: its metadata (RFC 8414 / OpenID
	// discovery) names the token endpoint when TokenEndpoint is empty,
	// and it is the audience of private_key_jwt assertions.
	Issuer string
	// TokenEndpoint, when set, is used without discovery.
	TokenEndpoint string
	Client        Client
	// Request is the exchange asked for, without its SubjectToken.
	Request ExchangeRequest
}

// rediscoverAfter is how long a failed discovery is remembered: callers
// arriving meanwhile get the same error instead of a metadata fetch each.
const rediscoverAfter = 10 * time.Second

// Exchanger exchanges callers' access tokens for one configured target.
// It is safe for concurrent use; it keeps no tokens.
type Exchanger struct {
	e   *Engine
	cfg ExchangerConfig

	mu       sync.Mutex // guards as, lastErr, failedAt; held while metadata is fetched
	as       *ServerMetadata
	lastErr  error
	failedAt time.Time
}

// NewExchanger returns an Exchanger for cfg using e.
func NewExchanger(e *Engine, cfg ExchangerConfig) (*Exchanger, error) {
	x := &Exchanger{e: e, cfg: cfg}
	switch {
	case cfg.TokenEndpoint != "":
		if err := e.Guard.CheckURL(cfg.TokenEndpoint, "token_endpoint"); err != nil {
			return nil, err
		}
		x.as = &ServerMetadata{Issuer: cfg.Issuer, TokenEndpoint: cfg.TokenEndpoint}
	case cfg.Issuer == "":
		return nil, errors.New("token exchange needs an issuer or a token_endpoint")
	}
	if cfg.Client.AuthMethod == "private_key_jwt" && cfg.Issuer == "" {
		return nil, errors.New("private_key_jwt needs the issuer: it is the audience of the client assertion")
	}
	return x, nil
}

// Exchange exchanges subjectToken (the caller's validated access token)
// for the configured target.
func (x *Exchanger) Exchange(ctx context.Context, subjectToken string) (*ExchangedToken, error) {
	as, err := x.metadata(ctx)
	if err != nil {
		return nil, err
	}
	r := x.cfg.Request
	r.SubjectToken = subjectToken
	c := x.cfg.Client
	return x.e.Exchange(ctx, as, &c, r)
}

// metadata returns the authorization server metadata, discovered on
// first use; a failure is answered from memory for rediscoverAfter.
func (x *Exchanger) metadata(ctx context.Context) (*ServerMetadata, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.as != nil {
		return x.as, nil
	}
	if x.lastErr != nil && x.e.Now().Sub(x.failedAt) < rediscoverAfter {
		return nil, x.lastErr
	}
	as, err := x.e.FetchServerMetadata(ctx, &Discovery{}, x.cfg.Issuer)
	if err == nil && as.TokenEndpoint == "" {
		err = fmt.Errorf("the metadata of %s names no token_endpoint", x.cfg.Issuer)
	}
	if err == nil && len(as.GrantTypesSupported) > 0 && !slices.Contains(as.GrantTypesSupported, GrantTokenExchange) {
		err = fmt.Errorf("%s does not list the token exchange grant (%s) in grant_types_supported", x.cfg.Issuer, GrantTokenExchange)
	}
	if err == nil {
		err = x.e.Guard.CheckURL(as.TokenEndpoint, "token_endpoint")
	}
	if err != nil {
		x.lastErr, x.failedAt = &TokenError{Endpoint: "authorization server metadata", Err: err}, x.e.Now()
		return nil, x.lastErr
	}
	x.as, x.lastErr = as, nil
	return as, nil
}
