package authserver

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/oauth"
)

// Kept federated tokens (issue 15, part 4). With Federation.Tokens set,
// the tokens the upstream identity provider issues at a federated sign-in
// (access, refresh, ID token) are kept per user in the server's store,
// sealed with AES-256-GCM, and refreshed through the client engine
// (internal/oauth) when they near expiry. The gateway reads them
// in-process (FederatedToken) for upstreams whose audience is that
// provider; nothing here is reachable over HTTP.

// FederatedTokens configures the keeping of the provider's tokens.
type FederatedTokens struct {
	// Key is the sealing secret (at least 32 bytes); the AES-256 key is
	// derived from it with HKDF-SHA256.
	Key []byte
	// RefreshBefore: refresh this long before expiry (at most a quarter
	// of the token's lifetime). Default 60s.
	RefreshBefore time.Duration

	once sync.Once
	aead cipher.AEAD
	err  error

	mu      sync.Mutex // guards flights
	flights map[string]*refreshFlight
}

// refreshFlight is one refresh in progress for a user; concurrent callers
// wait for it instead of presenting the refresh token again.
type refreshFlight struct {
	done chan struct{}
	rec  *keptTokens
	err  error
}

const fedTokenBucket = "fedtokens"

// keptTokens is the sealed record of one user.
type keptTokens struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`
	Scopes       []string  `json:"scopes,omitempty"`
}

// fedTokenResponse is the part of the provider's token answer kept.
type fedTokenResponse struct {
	AccessToken  string      `json:"access_token"`
	TokenType    string      `json:"token_type"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	Scope        string      `json:"scope"`
}

// Errors of FederatedToken. Their text is shown to the caller: it says
// what to do and never carries a token.
var (
	ErrFederatedTokensOff = errors.New("the built-in authorization server keeps no identity provider tokens (set builtin.federation.tokens)")
	ErrNoFederatedToken   = errors.New("no identity provider token is kept for you: sign in again through the identity provider (a user who signed in before tokens were kept, or without the identity provider, has none)")
	ErrSignInAgain        = errors.New("your identity provider session has ended (the provider refused to refresh it): sign in again through the identity provider")
)

func (t *FederatedTokens) cipher() (cipher.AEAD, error) {
	t.once.Do(func() {
		if len(t.Key) < 32 {
			t.err = errors.New("builtin.federation.tokens: the key must be at least 32 bytes")
			return
		}
		k, err := hkdf.Key(sha256.New, t.Key, nil, "mcpgate federated tokens v1", 32)
		if err != nil {
			t.err = err
			return
		}
		block, _ := aes.NewCipher(k)
		t.aead, t.err = cipher.NewGCM(block)
	})
	return t.aead, t.err
}

// aad binds a sealed record to its issuer and user: a record copied under
// another user's key does not open.
func aad(issuer, user string) []byte {
	return []byte("mcpgate federated tokens v1\x00" + issuer + "\x00" + user)
}

func (t *FederatedTokens) seal(issuer, user string, rec *keptTokens) ([]byte, error) {
	a, err := t.cipher()
	if err != nil {
		return nil, err
	}
	plain, _ := json.Marshal(rec)
	nonce := make([]byte, a.NonceSize())
	_, _ = rand.Read(nonce)
	return a.Seal(nonce, nonce, plain, aad(issuer, user)), nil
}

func (t *FederatedTokens) open(issuer, user string, raw []byte) (*keptTokens, error) {
	a, err := t.cipher()
	if err != nil {
		return nil, err
	}
	if len(raw) < a.NonceSize() {
		return nil, errors.New("the kept identity provider token is damaged: sign in again through the identity provider")
	}
	plain, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], aad(issuer, user))
	if err != nil {
		return nil, errors.New("the kept identity provider token cannot be opened (builtin.federation.tokens key changed?): sign in again through the identity provider")
	}
	var rec keptTokens
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// keepFederated stores the provider's answer of a federated sign-in for
// user. A failure costs the sign-in nothing: the user gets a clear error
// where the token is needed.
func (s *Server) keepFederated(user string, tr fedTokenResponse, idToken string) {
	ft := s.fedTokens()
	if ft == nil || tr.AccessToken == "" {
		return
	}
	rec := &keptTokens{AccessToken: tr.AccessToken, TokenType: tr.TokenType, RefreshToken: tr.RefreshToken, IDToken: idToken,
		IssuedAt: s.now(), Scopes: strings.Fields(tr.Scope)}
	if n, err := tr.ExpiresIn.Int64(); err == nil && n > 0 {
		rec.Expiry = s.now().Add(time.Duration(n) * time.Second)
	}
	if err := s.storeKept(user, rec); err != nil {
		s.cfg.Log.Warn("keeping the identity provider's tokens failed", "user", user, "err", err)
	}
}

func (s *Server) fedTokens() *FederatedTokens {
	if f := s.cfg.Federation; f != nil {
		return f.Tokens
	}
	return nil
}

// storeKept seals rec; the entry lives as long as a refresh token of the
// built-in server (a later sign-in replaces it).
func (s *Server) storeKept(user string, rec *keptTokens) error {
	raw, err := s.fedTokens().seal(s.cfg.Issuer, user, rec)
	if err != nil {
		return err
	}
	return s.cfg.Store.Put(fedTokenBucket, user, raw, s.cfg.RefreshTokenTTL)
}

func (s *Server) loadKept(user string) (*keptTokens, error) {
	raw, err := s.cfg.Store.Get(fedTokenBucket, user)
	if err != nil {
		return nil, fmt.Errorf("reading the kept identity provider token: %w", err)
	}
	if raw == nil {
		return nil, ErrNoFederatedToken
	}
	return s.fedTokens().open(s.cfg.Issuer, user, raw)
}

// FederatedToken returns user's kept token of the federated provider:
// kind "access_token" or "id_token", with its expiry (zero: none known).
// A token near expiry is refreshed first, once per user however many
// callers ask. user is the subject of a token this server issued: the
// caller (the gateway, in-process) has verified that token.
func (s *Server) FederatedToken(ctx context.Context, user, kind string) (string, time.Time, error) {
	ft := s.fedTokens()
	if ft == nil {
		return "", time.Time{}, ErrFederatedTokensOff
	}
	rec, err := s.loadKept(user)
	if err != nil {
		return "", time.Time{}, err
	}
	if !s.usable(rec, kind) {
		if rec, err = ft.singleFlight(ctx, user, func(ctx context.Context) (*keptTokens, error) { return s.refreshKept(ctx, user, kind) }); err != nil {
			return "", time.Time{}, err
		}
	}
	if kind == "id_token" {
		return rec.IDToken, idTokenExpiry(rec.IDToken), nil
	}
	return rec.AccessToken, rec.Expiry, nil
}

// usable: the wanted token exists and is not within the refresh window.
func (s *Server) usable(rec *keptTokens, kind string) bool {
	skew := s.fedTokens().RefreshBefore
	if skew <= 0 {
		skew = time.Minute
	}
	if kind == "id_token" {
		exp := idTokenExpiry(rec.IDToken)
		return rec.IDToken != "" && (exp.IsZero() || s.now().Add(skew).Before(exp))
	}
	t := oauth.Token{AccessToken: rec.AccessToken, Expiry: rec.Expiry, IssuedAt: rec.IssuedAt}
	return !t.Stale(s.now(), skew)
}

// singleFlight runs refresh for user unless one is already running, whose result
// every waiter shares. The refresh outlives a caller that gives up.
func (t *FederatedTokens) singleFlight(ctx context.Context, user string, refresh func(context.Context) (*keptTokens, error)) (*keptTokens, error) {
	t.mu.Lock()
	if t.flights == nil {
		t.flights = map[string]*refreshFlight{}
	}
	fl, running := t.flights[user]
	if !running {
		fl = &refreshFlight{done: make(chan struct{})}
		t.flights[user] = fl
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			fl.rec, fl.err = refresh(rctx)
			t.mu.Lock()
			delete(t.flights, user)
			t.mu.Unlock()
			close(fl.done)
		}()
	}
	t.mu.Unlock()
	select {
	case <-fl.done:
		return fl.rec, fl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshKept redeems user's kept refresh token at the provider. Only an
// answer that says the grant is gone (invalid_grant) deletes the record;
// a transient failure keeps it for the next attempt.
func (s *Server) refreshKept(ctx context.Context, user, kind string) (*keptTokens, error) {
	rec, err := s.loadKept(user) // another replica may have refreshed it
	if err != nil || s.usable(rec, kind) {
		return rec, err
	}
	if rec.RefreshToken == "" {
		return nil, fmt.Errorf("%w (your token expired and the provider issued no refresh token)", ErrSignInAgain)
	}
	eng, as, client, err := s.federationClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("the identity provider cannot be reached to refresh your token; try again shortly (%v)", err)
	}
	old := &oauth.Token{AccessToken: rec.AccessToken, RefreshToken: rec.RefreshToken, Scopes: rec.Scopes}
	t, err := eng.Refresh(ctx, as, client, old, "", nil)
	switch {
	case err == nil:
	case oauth.IsInvalidGrant(err):
		if now, lerr := s.loadKept(user); lerr == nil && now.RefreshToken != rec.RefreshToken && s.usable(now, kind) {
			return now, nil // another replica rotated it first
		}
		_ = s.cfg.Store.Delete(fedTokenBucket, user)
		s.cfg.Log.Info("identity provider refused the refresh; kept tokens deleted", "user", user)
		return nil, ErrSignInAgain
	case oauth.IsTransient(err):
		return nil, fmt.Errorf("the identity provider is unavailable; try again shortly (%v)", err)
	default:
		return nil, fmt.Errorf("the identity provider refused to refresh your token (%v); if this persists, sign in again through the identity provider", err)
	}
	next := &keptTokens{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, IDToken: rec.IDToken,
		Expiry: t.Expiry, IssuedAt: t.IssuedAt, Scopes: t.Scopes}
	if t.IDToken != "" {
		if !sameIDSubject(rec.IDToken, t.IDToken) {
			return nil, errors.New("the identity provider's refreshed ID token names another subject; refusing it: sign in again through the identity provider")
		}
		next.IDToken = t.IDToken
	}
	if err := s.storeKept(user, next); err != nil {
		return nil, fmt.Errorf("storing the refreshed identity provider token failed: %w", err)
	}
	if !s.usable(next, kind) {
		return nil, fmt.Errorf("%w (the provider's refreshed %s is already expiring)", ErrSignInAgain, kind)
	}
	return next, nil
}

// federationClient is the client engine set up for the provider's token
// endpoint, with the federation's client credentials. The endpoint is
// the operator's configuration, so every address class is allowed.
func (s *Server) federationClient(ctx context.Context) (*oauth.Engine, *oauth.ServerMetadata, *oauth.Client, error) {
	f := s.cfg.Federation
	meta, _, err := f.metaFor(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	eng := &oauth.Engine{HTTP: f.client(), Guard: oauth.NewGuard(f.Issuer, true, true), Log: s.cfg.Log, Now: s.now}
	c := &oauth.Client{ID: f.ClientID, Secret: f.ClientSecret, AuthMethod: "client_secret_basic"}
	switch {
	case f.ClientSecret == "":
		c.AuthMethod = "none"
	case f.GitHub:
		c.AuthMethod = "client_secret_post" // GitHub reads the form
	}
	return eng, &oauth.ServerMetadata{Issuer: f.Issuer, TokenEndpoint: meta.TokenEndpoint}, c, nil
}

// idTokenExpiry reads exp of an ID token the provider's token endpoint
// gave this server (its signature was checked at sign-in; a refreshed one
// comes from the same endpoint over the same channel).
func idTokenExpiry(tok string) time.Time {
	var c jwt.Claims
	if parsed(tok, &c) && c.Expiry != nil {
		return c.Expiry.Time()
	}
	return time.Time{}
}

func parsed(tok string, c *jwt.Claims) bool {
	if tok == "" {
		return false
	}
	t, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA})
	return err == nil && t.UnsafeClaimsWithoutVerification(c) == nil
}

// sameIDSubject: OpenID Connect Core §12.2 — a refreshed ID token must
// name the same issuer and subject as the original.
func sameIDSubject(old, next string) bool {
	var a, b jwt.Claims
	if !parsed(next, &b) {
		return false
	}
	if !parsed(old, &a) {
		return true // GitHub: no ID token at sign-in
	}
	return a.Issuer == b.Issuer && a.Subject == b.Subject
}
