package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// Store persists credentials; internal/vault implements it. Get returns
// (nil, nil) for a missing key. Lock takes a lock shared by every process
// of the user (for refresh and login single-flight).
type Store interface {
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
	Delete(key string) error
	List(prefix string) ([]string, error)
	Lock(ctx context.Context, name string) (unlock func(), err error)
}

// Record is what is stored per (profile, issuer, client, resource).
type Record struct {
	Version   int            `json:"version"`
	Profile   string         `json:"profile"`
	Server    string         `json:"server"`
	Resource  string         `json:"resource"`
	Issuer    string         `json:"issuer"`
	Client    Client         `json:"client"`
	ClientKey []byte         `json:"client_key,omitempty"` // PKCS#8, DCR private_key_jwt
	DPoPKey   []byte         `json:"dpop_key,omitempty"`   // PKCS#8 ES256
	Token     Token          `json:"token"`
	AS        ServerMetadata `json:"as"`
	Subject   string         `json:"subject,omitempty"`
	Grant     string         `json:"grant,omitempty"` // authorization_code, client_credentials, device
	UpdatedAt time.Time      `json:"updated_at"`
}

// TokenKey is the store key of a record.
func TokenKey(profile, issuer, clientID, resource string) string {
	return "token|" + profile + "|" + issuer + "|" + clientID + "|" + resource
}

// ServerKey is the store key of the pointer from a server URL to its record.
func ServerKey(profile, server string) string {
	c, err := CanonicalResource(server)
	if err != nil {
		c = server
	}
	return "server|" + profile + "|" + c
}

// ClientKeyOf is the store key of a registration (per issuer: never used
// with another authorization server).
func ClientKeyOf(profile, issuer string) string { return "client|" + profile + "|" + issuer }

// Config is how the user wants to authenticate to one server.
type Config struct {
	ServerURL         string
	Profile           string
	ClientID          string
	ClientSecret      string
	ClientMetadataURL string
	AuthMethod        string
	ClientKey         crypto.Signer
	ClientKeyID       string
	Scopes            []string // --scope: replaces the spec's selection
	Issuer            string   // choose among several authorization servers
	NoResource        bool
	DPoP              string // auto (default), on, off
	NoPAR             bool
	Redirect          Redirect
	// Callback, when set, receives the redirect instead of a listener of
	// its own (the broker's /oauth/callback).
	Callback          *Listener
	Interaction       Interaction
	ClientCredentials bool
	Device            bool
	// NonInteractive: never start a user login; return ErrLoginRequired.
	NonInteractive bool
	// Overrides patch discovered AS metadata for broken servers.
	Overrides ServerMetadata
	// Force makes Login authorize even when another process just stored
	// a token (mcpgate login).
	Force bool
	// RefreshSkew: refresh when the token expires within it (default 60s).
	RefreshSkew time.Duration
	// DPoPContentDigest adds the content_digest claim (a digest of the
	// request body) to DPoP proofs sent to the MCP server, for servers
	// that still require the first MCP DPoP draft's claim. Default off:
	// standard RFC 9449 proofs, as the current profile (SEP-1932) defines.
	DPoPContentDigest bool
}

// ErrLoginRequired: no usable credential and the session may not start a
// login by itself.
var ErrLoginRequired = errors.New("not logged in")

// maxAuthorizations per resource and operation (step-up loop guard).
const maxAuthorizations = 3

// Session holds the credentials for one MCP server and applies them to
// requests: proactive refresh, refresh or login on 401, step-up on 403,
// DPoP proofs and nonces.
type Session struct {
	e     *Engine
	store Store
	cfg   Config

	mu       sync.Mutex
	rec      *Record
	dpopKey  *DPoPKey
	rsNonce  string
	attempts map[string]int
	scopes   []string      // scopes asked for so far (step-up union)
	loginSem chan struct{} // one login at a time in this process
}

// NewSession binds an engine, a store and a configuration.
func NewSession(e *Engine, store Store, cfg Config) *Session {
	if cfg.Profile == "" {
		cfg.Profile = "default"
	}
	if cfg.DPoP == "" {
		cfg.DPoP = "auto"
	}
	if cfg.RefreshSkew == 0 {
		cfg.RefreshSkew = 60 * time.Second
	}
	return &Session{e: e, store: store, cfg: cfg, attempts: map[string]int{}, loginSem: make(chan struct{}, 1)}
}

// Record returns a copy of the current record (nil when none).
func (s *Session) Record() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil {
		return nil
	}
	r := *s.rec
	return &r
}

// Load reads the stored record for the server, if any.
func (s *Session) Load() error {
	rec, err := s.loadStored()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopt(rec)
}

func (s *Session) loadStored() (*Record, error) {
	ptr, err := s.store.Get(ServerKey(s.cfg.Profile, s.cfg.ServerURL))
	if err != nil || ptr == nil {
		return nil, err
	}
	raw, err := s.store.Get(string(ptr))
	if err != nil || raw == nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("stored credential for %s is unreadable (%v); run mcpgate logout %s and log in again", s.cfg.ServerURL, err, s.cfg.ServerURL)
	}
	return &rec, nil
}

// adopt makes rec current (s.mu held).
func (s *Session) adopt(rec *Record) error {
	if rec == nil {
		return nil
	}
	if len(rec.DPoPKey) > 0 {
		k, err := x509.ParsePKCS8PrivateKey(rec.DPoPKey)
		if err != nil {
			return fmt.Errorf("stored DPoP key: %w", err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return errors.New("stored DPoP key is not a signing key")
		}
		s.dpopKey = &DPoPKey{Key: signer, Alg: "ES256"}
	} else {
		s.dpopKey = nil
	}
	if len(rec.ClientKey) > 0 {
		k, err := x509.ParsePKCS8PrivateKey(rec.ClientKey)
		if err == nil {
			rec.Client.Key, _ = k.(crypto.Signer)
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

func (s *Session) save(rec *Record) error {
	rec.Version = 1
	rec.UpdatedAt = s.e.Now()
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := TokenKey(rec.Profile, rec.Issuer, rec.Client.ID, rec.Resource)
	if err := s.store.Put(key, raw); err != nil {
		return fmt.Errorf("storing the credential: %w", err)
	}
	return s.store.Put(ServerKey(rec.Profile, rec.Server), []byte(key))
}

func (s *Session) lockName(rec *Record) string {
	return "refresh|" + rec.Issuer + "|" + rec.Client.ID + "|" + rec.Resource
}

// Token returns a usable access token, refreshing it first when it is
// about to expire. It returns (nil, nil) when there is no credential.
func (s *Session) Token(ctx context.Context) (*Token, error) {
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
func (s *Session) refresh(ctx context.Context, stale string) error {
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
	case rec.Grant == "client_credentials":
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

func (s *Session) resourceParam(r string) string {
	if s.cfg.NoResource {
		return ""
	}
	return r
}

func (s *Session) keyFor(rec *Record) *DPoPKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == rec || (s.rec != nil && s.rec.DPoPKey != nil && string(s.rec.DPoPKey) == string(rec.DPoPKey)) {
		return s.dpopKey
	}
	if len(rec.DPoPKey) == 0 {
		return nil
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.DPoPKey)
	if err != nil {
		return nil
	}
	return &DPoPKey{Key: k.(crypto.Signer), Alg: "ES256"}
}

// Apply adds the credential to an MCP request: Authorization (Bearer or
// DPoP) and, for DPoP, a fresh RFC 9449 proof with ath and the resource
// server's nonce (and content_digest over body only when
// Config.DPoPContentDigest asks for it). Without a credential it does
// nothing.
//
// The credential is for the MCP server's origin only: a request to any
// other origin (a cross-origin HTTP+SSE endpoint, a caller's mistake) is
// refused before a token is read.
func (s *Session) Apply(ctx context.Context, req *http.Request, body []byte) error {
	if want := origin.OfString(s.cfg.ServerURL); s.cfg.ServerURL != "" && (want == "" || want != origin.Of(req.URL)) {
		return fmt.Errorf("%w: refusing to send the credential for %s to %s", origin.ErrOther, want, origin.Of(req.URL))
	}
	t, err := s.Token(ctx)
	if err != nil {
		if errors.Is(err, ErrLoginRequired) || IsTransient(err) {
			// send unauthenticated: the 401 drives what happens next
			return nil
		}
		return err
	}
	if t == nil {
		return nil
	}
	if !t.DPoP() {
		req.Header.Set("Authorization", "Bearer "+t.AccessToken)
		return nil
	}
	s.mu.Lock()
	key, nonce := s.dpopKey, s.rsNonce
	s.mu.Unlock()
	if key == nil {
		return errors.New("the stored token is DPoP-bound but its key is missing; run mcpgate login again")
	}
	proof, err := key.Proof(req.Method, req.URL.String(), dpop.ProofOptions{AccessToken: t.AccessToken, Nonce: nonce, Body: body, ContentDigest: s.cfg.DPoPContentDigest && len(body) > 0})
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "DPoP "+t.AccessToken)
	req.Header.Set("DPoP", proof)
	return nil
}

// Handle reacts to a 401 or 403 from the MCP server for a request of the
// given operation (JSON-RPC method): DPoP nonce, refresh, login or
// step-up. retry says whether the request should be sent again.
func (s *Session) Handle(ctx context.Context, resp *http.Response, op string) (retry bool, err error) {
	cs, _ := ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	ch, ok := Find(cs, "DPoP")
	if !ok {
		ch, _ = Find(cs, "Bearer")
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		s.mu.Lock()
		changed := s.rsNonce != n
		s.rsNonce = n
		s.mu.Unlock()
		if ch.Param("error") == "use_dpop_nonce" && changed {
			return true, nil
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		sent := sentToken(resp)
		if rec != nil && sent != "" && (rec.Token.RefreshToken != "" || rec.Grant == "client_credentials") {
			err := s.refresh(ctx, sent)
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, ErrLoginRequired) && IsTransient(err) {
				return false, err
			}
		} else if rec != nil && sent == "" && !rec.Token.Expired(s.e.Now(), 0) {
			return true, nil // a token exists now (another request logged in)
		}
		return s.login(ctx, ch, op, nil, sent)
	case http.StatusForbidden:
		if ch.Param("error") != "insufficient_scope" {
			return false, nil
		}
		s.mu.Lock()
		union := slices.Clone(s.scopes)
		if s.rec != nil {
			union = append(union, s.rec.Token.Scopes...)
		}
		s.mu.Unlock()
		for _, sc := range ch.Scopes() {
			if !slices.Contains(union, sc) {
				union = append(union, sc)
			}
		}
		return s.login(ctx, ch, op, dedupe(union), sentToken(resp))
	}
	return false, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// sentToken is the access token a request carried.
func sentToken(resp *http.Response) string {
	if resp.Request == nil {
		return ""
	}
	a := resp.Request.Header.Get("Authorization")
	if _, tok, ok := strings.Cut(a, " "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}

func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// login runs one login at a time per process (the airlock): requests
// that failed while another login was running wait for it, then retry
// with its token instead of starting another browser flow.
func (s *Session) login(ctx context.Context, ch Challenge, op string, scopes []string, sent string) (bool, error) {
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

// Login discovers the server's authorization server, gets a client,
// obtains a token by the configured grant and stores it. scopes overrides
// the spec's scope selection (step-up union); nil selects per spec.
func (s *Session) Login(ctx context.Context, ch Challenge, scopes []string) error {
	return s.doLogin(ctx, ch, scopes, s.cfg.Interaction, s.cfg.Force)
}

// LoginWith runs a forced login (as mcpgate login does) with its own
// interaction: the broker opens the user's browser by redirecting it.
func (s *Session) LoginWith(ctx context.Context, ch Challenge, in Interaction) error {
	select {
	case s.loginSem <- struct{}{}:
		defer func() { <-s.loginSem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.doLogin(ctx, ch, nil, in, true)
}

func (s *Session) doLogin(ctx context.Context, ch Challenge, scopes []string, in Interaction, force bool) error {
	before := s.Record()
	unlock, err := s.store.Lock(ctx, "login|"+s.cfg.Profile+"|"+ServerKey("", s.cfg.ServerURL))
	if err != nil {
		return err
	}
	defer unlock()
	// another process may have logged in while we waited
	if scopes == nil && !force {
		if fresh, err := s.loadStored(); err == nil && fresh != nil && !fresh.Token.Stale(s.e.Now(), s.cfg.RefreshSkew) &&
			(before == nil || fresh.Token.AccessToken != before.Token.AccessToken) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.adopt(fresh)
		}
	}
	d, err := s.e.Discover(ctx, s.cfg.ServerURL, ch, s.cfg.Issuer)
	if err != nil {
		return err
	}
	s.applyOverrides(d.AS)
	if scopes == nil {
		scopes = s.selectScopes(d, ch)
	}
	s.mu.Lock()
	s.scopes = slices.Clone(scopes)
	s.mu.Unlock()
	key, keyDER, err := s.dpopKeyFor(d)
	if err != nil {
		return err
	}
	rec := &Record{Profile: s.cfg.Profile, Server: s.cfg.ServerURL, Resource: d.Resource, Issuer: d.AS.Issuer, AS: *d.AS, DPoPKey: keyDER}
	ar := &AuthRequest{Discovery: d, Scopes: scopes, NoResource: s.cfg.NoResource, DPoP: key, NoPAR: s.cfg.NoPAR}
	var tok *Token
	switch {
	case s.cfg.ClientCredentials:
		c, err := s.client(ctx, d, "", key != nil)
		if err != nil {
			return err
		}
		rec.Client, rec.Grant = *c, "client_credentials"
		tok, err = s.e.ClientCredentials(ctx, d.AS, c, scopes, s.resourceParam(d.Resource), key)
		if err != nil {
			return err
		}
	case s.cfg.Device:
		c, err := s.client(ctx, d, "", key != nil)
		if err != nil {
			return err
		}
		ar.Client, rec.Client, rec.Grant = c, *c, "device"
		if tok, err = s.e.Device(ctx, ar, in); err != nil {
			return err
		}
	default:
		l := s.cfg.Callback
		if l == nil {
			var err error
			if l, err = Listen(s.cfg.Redirect); err != nil {
				return err
			}
			defer l.Close()
		}
		c, err := s.client(ctx, d, l.URI, key != nil)
		if err != nil {
			return err
		}
		ar.Client, rec.Client, rec.Grant = c, *c, "authorization_code"
		tok, err = s.e.AuthorizationCode(ctx, ar, l, in)
		if err != nil && c.Kind == "dcr" && (IsInvalidClient(err) || isRedirectMismatch(err)) {
			// the registration is gone or does not fit: register again once
			_ = s.store.Delete(ClientKeyOf(s.cfg.Profile, d.AS.Issuer))
			if s.cfg.Callback == nil {
				// the first flow's callback server closed its listener
				if l, err = Listen(s.cfg.Redirect); err != nil {
					return err
				}
				defer l.Close()
			}
			if c, err = s.client(ctx, d, l.URI, key != nil); err != nil {
				return err
			}
			ar.Client, rec.Client = c, *c
			tok, err = s.e.AuthorizationCode(ctx, ar, l, in)
		}
		if err != nil {
			return err
		}
	}
	if len(rec.Client.ClientKeyDER()) > 0 {
		rec.ClientKey = rec.Client.ClientKeyDER()
	}
	rec.Token = *tok
	rec.Subject = subjectOf(tok)
	if err := s.save(rec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopt(rec)
}

func isRedirectMismatch(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "redirect_uri") || strings.Contains(err.Error(), "invalid_redirect_uri"))
}

// ClientKeyDER is the PKCS#8 form of a generated private_key_jwt key.
func (c *Client) ClientKeyDER() []byte {
	if c.Kind != "dcr" || c.Key == nil {
		return nil
	}
	if _, ok := c.Key.(*ecdsa.PrivateKey); !ok {
		return nil
	}
	der, _ := x509.MarshalPKCS8PrivateKey(c.Key)
	return der
}

func (s *Session) applyOverrides(as *ServerMetadata) {
	o := s.cfg.Overrides
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&as.AuthorizationEndpoint, o.AuthorizationEndpoint}, {&as.TokenEndpoint, o.TokenEndpoint},
		{&as.RegistrationEndpoint, o.RegistrationEndpoint}, {&as.RevocationEndpoint, o.RevocationEndpoint},
		{&as.PAREndpoint, o.PAREndpoint}, {&as.DeviceAuthorizationEndpoint, o.DeviceAuthorizationEndpoint},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if len(o.CodeChallengeMethods) > 0 {
		as.CodeChallengeMethods = o.CodeChallengeMethods
	}
}

// selectScopes implements the MCP scope selection: the user's --scope,
// else the challenge's scope, else all of the PRM scopes_supported, else
// none; offline_access is added only when the AS lists it and a refresh
// token can be used.
func (s *Session) selectScopes(d *Discovery, ch Challenge) []string {
	var out []string
	switch {
	case len(s.cfg.Scopes) > 0:
		out = slices.Clone(s.cfg.Scopes)
	case len(ch.Scopes()) > 0:
		out = ch.Scopes()
	case d.PRM != nil && len(d.PRM.ScopesSupported) > 0:
		out = slices.Clone(d.PRM.ScopesSupported)
	}
	if slices.Contains(d.AS.ScopesSupported, "offline_access") && !slices.Contains(out, "offline_access") &&
		!s.cfg.ClientCredentials && len(s.cfg.Scopes) == 0 {
		out = append(out, "offline_access")
	}
	if !slices.Contains(d.AS.ScopesSupported, "offline_access") {
		out = slices.DeleteFunc(out, func(v string) bool { return v == "offline_access" && len(s.cfg.Scopes) == 0 })
	}
	return out
}

// dpopKeyFor decides whether to use DPoP with this AS and returns the key
// (the stored one for the same issuer and resource, else a new one).
func (s *Session) dpopKeyFor(d *Discovery) (*DPoPKey, []byte, error) {
	use := false
	switch s.cfg.DPoP {
	case "on":
		use = true
	case "off":
	default:
		use = slices.Contains(d.AS.DPoPSigningAlgs, "ES256") || (d.PRM != nil && d.PRM.DPoPBoundRequired)
	}
	if !use {
		return nil, nil, nil
	}
	if s.cfg.DPoP == "on" && len(d.AS.DPoPSigningAlgs) > 0 && !slices.Contains(d.AS.DPoPSigningAlgs, "ES256") {
		return nil, nil, fmt.Errorf("the authorization server's DPoP algorithms %v do not include ES256", d.AS.DPoPSigningAlgs)
	}
	s.mu.Lock()
	rec, key := s.rec, s.dpopKey
	s.mu.Unlock()
	if rec != nil && key != nil && rec.Issuer == d.AS.Issuer && rec.Resource == d.Resource {
		return key, rec.DPoPKey, nil
	}
	k, err := NewDPoPKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, nil, err
	}
	return k, der, nil
}

// client returns the OAuth client to use with d.AS, in the spec's order:
// pre-registered, Client ID Metadata Document (when the AS supports it),
// a stored registration for this issuer, Dynamic Client Registration.
func (s *Session) client(ctx context.Context, d *Discovery, redirectURI string, dpopBound bool) (*Client, error) {
	as := d.AS
	if s.cfg.ClientID != "" {
		var keyed *Client
		if s.cfg.ClientKey != nil {
			keyed = &Client{Key: s.cfg.ClientKey, KeyID: s.cfg.ClientKeyID}
		}
		return PreRegistered(as, s.cfg.ClientID, s.cfg.ClientSecret, keyed, s.cfg.AuthMethod), nil
	}
	if s.cfg.ClientCredentials {
		return nil, errors.New("the client credentials grant needs --client-id and a secret or key")
	}
	if s.cfg.ClientMetadataURL != "" && as.CIMDSupported {
		return MetadataDocumentClient(as, s.cfg.ClientMetadataURL)
	}
	key := ClientKeyOf(s.cfg.Profile, as.Issuer)
	if raw, err := s.store.Get(key); err == nil && raw != nil {
		var c struct {
			Client
			Key []byte `json:"key,omitempty"`
		}
		if json.Unmarshal(raw, &c) == nil && c.Issuer == as.Issuer && c.ID != "" &&
			(c.ExpiresAt.IsZero() || c.ExpiresAt.After(s.e.Now())) &&
			(redirectURI == "" || slices.Contains(c.RedirectURIs, redirectURI) || len(c.RedirectURIs) == 0 || loopbackAnyPort(c.RedirectURIs, redirectURI)) {
			cl := c.Client
			if len(c.Key) > 0 {
				if k, err := x509.ParsePKCS8PrivateKey(c.Key); err == nil {
					cl.Key, _ = k.(crypto.Signer)
				}
			}
			return &cl, nil
		}
	}
	if redirectURI == "" {
		return nil, errors.New("this grant needs a client registered by hand: pass --client-id")
	}
	c, keyDER, err := s.e.Register(ctx, as, redirectURI, dpopBound)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(struct {
		Client
		Key []byte `json:"key,omitempty"`
	}{*c, keyDER})
	if err := s.store.Put(key, raw); err != nil {
		return nil, fmt.Errorf("storing the client registration: %w", err)
	}
	return c, nil
}

// loopbackAnyPort: RFC 8252 §7.3 lets a native client use any port on a
// registered loopback redirect URI.
func loopbackAnyPort(registered []string, uri string) bool {
	strip := func(u string) string {
		if i := strings.LastIndex(u, ":"); i > strings.Index(u, "//") {
			if j := strings.Index(u[i:], "/"); j > 0 {
				return u[:i] + u[i+j:]
			}
		}
		return u
	}
	for _, r := range registered {
		if strip(r) == strip(uri) {
			return true
		}
	}
	return false
}

// subjectOf reads sub from a JWT access token or ID token without
// verifying it (display only).
func subjectOf(t *Token) string {
	for _, j := range []string{t.IDToken, t.AccessToken} {
		parts := strings.Split(j, ".")
		if len(parts) != 3 {
			continue
		}
		raw, err := decodeSegment(parts[1])
		if err != nil {
			continue
		}
		var c struct {
			Sub string `json:"sub"`
		}
		if json.Unmarshal(raw, &c) == nil && c.Sub != "" {
			return c.Sub
		}
	}
	return ""
}

// Logout revokes the refresh and access tokens where the AS offers
// revocation, then deletes the stored credential. A failed revocation is
// reported but does not keep the credential.
func (s *Session) Logout(ctx context.Context) (revoked bool, err error) {
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
			if k, err := x509.ParsePKCS8PrivateKey(rec.ClientKey); err == nil {
				c.Key, _ = k.(crypto.Signer)
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
