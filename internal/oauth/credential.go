package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// ErrLoginRequired: no usable credential and the session may not start a
// login by itself.
var ErrLoginRequired = errors.New("not logged in")

// maxAuthorizations per operation that the server did not follow with a
// success (step-up loop guard): "authorized, and the server still
// refuses" three times is a loop, not a step-up. A success resets the
// count (Accepted), so a server that asks for one more scope now and
// then, or tokens without refresh tokens, never exhaust it; one request
// is bounded on its own by mcpclient.MaxAttempts.
const maxAuthorizations = 3

// Credential is the credential and login lifecycle for one protected MCP
// server (one Config): it loads and stores the server's Record (record.go),
// applies the credential to requests and answers 401/403 challenges
// (apply.go: proactive refresh, refresh or login on 401, step-up on 403,
// DPoP proofs and nonces), logs in by the configured grant (login.go) and
// logs out. (It was oauth.Credential: "session" named five different things
// across the project; an MCP session is not a login.)
type Credential struct {
	e     *Engine
	store Store
	cfg   Config

	// mu guards rec, dpopKey, rsNonce, attempts and scopes. It is never
	// held across I/O (store, network, browser): those run on copies.
	mu       sync.Mutex
	rec      *Record        // the current stored record; nil before Load or after Logout
	dpopKey  *DPoPKey       // rec's DPoP key, parsed
	rsNonce  string         // the MCP server's last DPoP-Nonce
	attempts map[string]int // authorizations per operation since its last success (step-up loop guard)
	scopes   []string       // scopes asked for so far (step-up union)
	loginSem chan struct{}  // one login at a time in this process (not guarded by mu)
}

// NewCredential binds an engine, a store and a configuration.
func NewCredential(e *Engine, store Store, cfg Config) *Credential {
	return &Credential{e: e, store: store, cfg: cfg.withDefaults(), attempts: map[string]int{}, loginSem: make(chan struct{}, 1)}
}

// Record returns a copy of the current record (nil when none).
func (s *Credential) Record() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil {
		return nil
	}
	r := *s.rec
	return &r
}

// Load reads the stored record for the server, if any.
func (s *Credential) Load() error {
	rec, err := s.loadStored()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopt(rec)
}

// adopt makes rec current (s.mu held).
func (s *Credential) adopt(rec *Record) error {
	if rec == nil {
		return nil
	}
	if len(rec.DPoPKey) > 0 {
		k, err := parseDPoPKey(rec.DPoPKey)
		if err != nil {
			return err
		}
		s.dpopKey = k
	} else {
		s.dpopKey = nil
	}
	if len(rec.ClientKey) > 0 {
		if k, ok := parseClientKey(rec.ClientKey); ok {
			rec.Client.Key = k
		}
	} else if s.cfg.ClientKey != nil && rec.Client.AuthMethod == "private_key_jwt" {
		rec.Client.Key, rec.Client.KeyID = s.cfg.ClientKey, s.cfg.ClientKeyID
	}
	s.rec = rec
	if len(s.scopes) == 0 {
		s.scopes = slices.Clone(rec.Token.Scopes)
	}
	return nil
}

func (s *Credential) lockName(rec *Record) string {
	return "refresh|" + rec.Issuer + "|" + rec.Client.ID + "|" + rec.Resource
}

// Token returns a usable access token, refreshing it first when it is
// about to expire. It returns (nil, nil) when there is no credential.
func (s *Credential) Token(ctx context.Context) (*Token, error) {
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	if rec == nil {
		if err := s.Load(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		rec = s.rec
		s.mu.Unlock()
		if rec == nil {
			return nil, nil
		}
	}
	if !rec.Token.Stale(s.e.Now(), s.cfg.RefreshSkew) {
		t := rec.Token
		return &t, nil
	}
	if err := s.refresh(ctx, rec.Token.AccessToken); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.rec.Token
	return &t, nil
}

// refresh renews the token that failed (stale), once across processes:
// under the per-(issuer, client, resource) lock, a token another process
// already renewed is adopted instead of refreshing again.
func (s *Credential) refresh(ctx context.Context, stale string) error {
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	unlock, err := s.store.Lock(ctx, s.lockName(rec))
	if err != nil {
		return err
	}
	defer unlock()
	if fresh, err := s.loadStored(); err == nil && fresh != nil && fresh.Token.AccessToken != stale &&
		!fresh.Token.Stale(s.e.Now(), s.cfg.RefreshSkew) && fresh.Issuer == rec.Issuer {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.adopt(fresh)
	} else if err == nil && fresh != nil && fresh.Issuer == rec.Issuer {
		rec = fresh
	}
	var t *Token
	switch {
	case rec.Grant == grantClientCredentials:
		t, err = s.e.ClientCredentials(ctx, &rec.AS, &rec.Client, rec.Token.Scopes, s.resourceParam(rec.Resource), s.keyFor(rec))
	case rec.Token.RefreshToken != "":
		t, err = s.e.Refresh(ctx, &rec.AS, &rec.Client, &rec.Token, s.resourceParam(rec.Resource), s.keyFor(rec))
	default:
		return fmt.Errorf("%w: the access token for %s expired and no refresh token was issued; run mcpgate login %s", ErrLoginRequired, rec.Server, rec.Server)
	}
	if err != nil {
		if IsInvalidGrant(err) {
			return fmt.Errorf("%w: the authorization server no longer accepts the refresh token (%v); run mcpgate login %s", ErrLoginRequired, err, rec.Server)
		}
		return fmt.Errorf("refreshing the token for %s: %w", rec.Server, err)
	}
	nr := *rec
	nr.Token = *t
	if err := s.save(&nr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopt(&nr)
}

func (s *Credential) resourceParam(r string) string {
	if s.cfg.NoResource {
		return ""
	}
	return r
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// login runs one login at a time per process (the airlock): requests
// that failed while another login was running wait for it, then retry
// with its token instead of starting another browser flow.
func (s *Credential) login(ctx context.Context, ch Challenge, op string, scopes []string, sent string) (bool, error) {
	if s.cfg.NonInteractive && !s.cfg.ClientCredentials {
		return false, fmt.Errorf("%w to %s; run mcpgate login %s", ErrLoginRequired, s.cfg.ServerURL, s.cfg.ServerURL)
	}
	select {
	case s.loginSem <- struct{}{}:
		defer func() { <-s.loginSem }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	s.mu.Lock()
	if rec := s.rec; rec != nil && rec.Token.AccessToken != sent && !rec.Token.Stale(s.e.Now(), s.cfg.RefreshSkew) &&
		(scopes == nil || containsAll(rec.Token.Scopes, scopes)) {
		s.mu.Unlock()
		return true, nil
	}
	s.mu.Unlock()
	s.mu.Lock()
	s.attempts[op]++
	n := s.attempts[op]
	s.mu.Unlock()
	if n > maxAuthorizations {
		return false, fmt.Errorf("the server still refuses %s after %d authorizations (last challenge: %s %s); giving up — ask the server operator which scopes %s needs", op, maxAuthorizations, ch.Param("error"), ch.Param("scope"), op)
	}
	if err := s.Login(ctx, ch, scopes); err != nil {
		return false, err
	}
	return true, nil
}

// Accepted implements mcpclient.AcceptObserver: the server answered a
// request for op with success, so the authorizations counted for op were
// honoured and the loop guard starts again.
func (s *Credential) Accepted(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.attempts, op)
}

// forgetAttempts clears the loop guard for every operation: a person
// logged in on purpose (LoginWith).
func (s *Credential) forgetAttempts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.attempts)
}

// Logout revokes the refresh and access tokens where the AS offers
// revocation, then deletes the stored credential. A failed revocation is
// reported but does not keep the credential.
func (s *Credential) Logout(ctx context.Context) (revoked bool, err error) {
	rec, err := s.loadStored()
	if err != nil {
		return false, err
	}
	if rec == nil {
		return false, nil
	}
	var errs []error
	if rec.AS.RevocationEndpoint != "" {
		c := rec.Client
		if len(rec.ClientKey) > 0 {
			if k, ok := parseClientKey(rec.ClientKey); ok {
				c.Key = k
			}
		} else if s.cfg.ClientKey != nil {
			c.Key, c.KeyID = s.cfg.ClientKey, s.cfg.ClientKeyID
		}
		if c.AuthMethod == "client_secret_basic" || c.AuthMethod == "client_secret_post" {
			if c.Secret == "" {
				c.Secret = s.cfg.ClientSecret
			}
		}
		if rec.Token.RefreshToken != "" {
			if err := s.e.Revoke(ctx, &rec.AS, &c, rec.Token.RefreshToken, "refresh_token"); err != nil {
				errs = append(errs, err)
			}
		}
		// RFC 7009 §2.2.1: unsupported_token_type means the server does not
		// revoke access tokens of this kind (self-contained JWTs); revoking
		// the refresh token above ended the grant.
		if err := s.e.Revoke(ctx, &rec.AS, &c, rec.Token.AccessToken, "access_token"); err != nil && !isUnsupportedTokenType(err) {
			errs = append(errs, err)
		}
		revoked = len(errs) == 0
	}
	if err := s.store.Delete(TokenKey(rec.Profile, rec.Issuer, rec.Client.ID, rec.Resource)); err != nil {
		errs = append(errs, err)
	}
	if err := s.store.Delete(ServerKey(s.cfg.Profile, s.cfg.ServerURL)); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	s.rec, s.dpopKey = nil, nil
	s.mu.Unlock()
	return revoked, errors.Join(errs...)
}

func isUnsupportedTokenType(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "unsupported_token_type"
}
