package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Login discovers the server's authorization server, gets a client,
// obtains a token by the configured grant and stores it. scopes overrides
// the spec's scope selection (step-up union); nil selects per spec.
func (s *Credential) Login(ctx context.Context, ch Challenge, scopes []string) error {
	return s.doLogin(ctx, ch, scopes, s.cfg.Interaction, s.cfg.Force)
}

// LoginWith runs a forced login (as mcpgate login does) with its own
// interaction: the broker opens the user's browser by redirecting it.
func (s *Credential) LoginWith(ctx context.Context, ch Challenge, in Interaction) error {
	select {
	case s.loginSem <- struct{}{}:
		defer func() { <-s.loginSem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.doLogin(ctx, ch, nil, in, true); err != nil {
		return err
	}
	s.forgetAttempts() // a person logged in on purpose: the step-up guard starts again
	return nil
}

// doLogin is one login: under the store's login lock (shared by every
// process of the user), adopt a token another process stored meanwhile,
// else discover, choose scopes and DPoP key, run the grant and store the
// new record.
func (s *Credential) doLogin(ctx context.Context, ch Challenge, scopes []string, in Interaction, force bool) error {
	before := s.Record()
	unlock, err := s.store.Lock(ctx, "login|"+s.cfg.Profile+"|"+ServerKey("", s.cfg.ServerURL))
	if err != nil {
		return err
	}
	defer unlock()
	if scopes == nil && !force {
		if fresh := s.loggedInMeanwhile(before); fresh != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.adopt(fresh)
		}
	}
	d, scopes, err := s.prepareLogin(ctx, ch, scopes)
	if err != nil {
		return err
	}
	key, keyDER, err := s.dpopKeyFor(d)
	if err != nil {
		return err
	}
	rec := &Record{Profile: s.cfg.Profile, Server: s.cfg.ServerURL, Resource: d.Resource, Issuer: d.AS.Issuer, AS: *d.AS, DPoPKey: keyDER}
	ar := &AuthRequest{Discovery: d, Scopes: scopes, NoResource: s.cfg.NoResource, DPoP: key, NoPAR: s.cfg.NoPAR}
	tok, err := s.runGrant(ctx, ar, rec, in)
	if err != nil {
		return err
	}
	return s.storeLogin(rec, tok)
}

// loggedInMeanwhile is the stored record when another process logged in
// while this one waited for the login lock: fresh and not the token this
// session held before.
func (s *Credential) loggedInMeanwhile(before *Record) *Record {
	fresh, err := s.loadStored()
	if err == nil && fresh != nil && !fresh.Token.Stale(s.e.Now(), s.cfg.RefreshSkew) &&
		(before == nil || fresh.Token.AccessToken != before.Token.AccessToken) {
		return fresh
	}
	return nil
}

// prepareLogin discovers the authorization server, applies the
// configured metadata overrides and settles the scopes to ask for (the
// given ones, else the spec's selection), remembered for step-up.
func (s *Credential) prepareLogin(ctx context.Context, ch Challenge, scopes []string) (*Discovery, []string, error) {
	d, err := s.e.Discover(ctx, s.cfg.ServerURL, ch, s.cfg.Issuer)
	if err != nil {
		return nil, nil, err
	}
	s.applyOverrides(d.AS)
	if scopes == nil {
		scopes = s.selectScopes(d, ch)
	}
	s.mu.Lock()
	s.scopes = slices.Clone(scopes)
	s.mu.Unlock()
	return d, scopes, nil
}

// Record.Grant values: the grant that obtained the stored token, which
// also decides how it is renewed (a client credentials token is fetched
// again; the others are refreshed).
const (
	grantAuthorizationCode = "authorization_code"
	grantClientCredentials = "client_credentials"
	grantDevice            = "device"
)

// grant is the login grant the configuration asks for: client
// credentials (--client-credentials) first, then the device
// authorization grant (--device, RFC 8628), else the authorization code
// grant with PKCE.
func (c *Config) grant() string {
	switch {
	case c.ClientCredentials:
		return grantClientCredentials
	case c.Device:
		return grantDevice
	default:
		return grantAuthorizationCode
	}
}

// runGrant obtains a token by the configured grant and records the
// client and grant used in rec.
func (s *Credential) runGrant(ctx context.Context, ar *AuthRequest, rec *Record, in Interaction) (*Token, error) {
	switch s.cfg.grant() {
	case grantClientCredentials:
		return s.clientCredentialsGrant(ctx, ar, rec)
	case grantDevice:
		return s.deviceGrant(ctx, ar, rec, in)
	default:
		return s.authorizationCodeGrant(ctx, ar, rec, in)
	}
}

// clientCredentialsGrant: RFC 6749 §4.4, with a client registered by hand.
func (s *Credential) clientCredentialsGrant(ctx context.Context, ar *AuthRequest, rec *Record) (*Token, error) {
	d := ar.Discovery
	c, err := s.client(ctx, d, "", ar.DPoP != nil)
	if err != nil {
		return nil, err
	}
	rec.Client, rec.Grant = *c, grantClientCredentials
	return s.e.ClientCredentials(ctx, d.AS, c, ar.Scopes, s.resourceParam(d.Resource), ar.DPoP)
}

// deviceGrant: the device authorization grant (RFC 8628).
func (s *Credential) deviceGrant(ctx context.Context, ar *AuthRequest, rec *Record, in Interaction) (*Token, error) {
	c, err := s.client(ctx, ar.Discovery, "", ar.DPoP != nil)
	if err != nil {
		return nil, err
	}
	ar.Client, rec.Client, rec.Grant = c, *c, grantDevice
	return s.e.Device(ctx, ar, in)
}

// authorizationCodeGrant runs the authorization code flow; when a
// dynamically registered client is refused (the registration is gone or
// does not fit the redirect URI) it registers again, once.
func (s *Credential) authorizationCodeGrant(ctx context.Context, ar *AuthRequest, rec *Record, in Interaction) (*Token, error) {
	rec.Grant = grantAuthorizationCode
	tok, c, err := s.authorize(ctx, ar, rec, in)
	if err != nil && c != nil && c.Kind == "dcr" && (IsInvalidClient(err) || isRedirectMismatch(err)) {
		_ = s.store.Delete(ClientKeyOf(s.cfg.Profile, ar.Discovery.AS.Issuer))
		tok, _, err = s.authorize(ctx, ar, rec, in)
	}
	return tok, err
}

// authorize is one authorization code flow on the redirect listener (the
// broker's callback, else a loopback listener of its own, closed after
// the flow) with the client chosen for its redirect URI.
func (s *Credential) authorize(ctx context.Context, ar *AuthRequest, rec *Record, in Interaction) (*Token, *Client, error) {
	l := s.cfg.Callback
	if l == nil {
		var err error
		if l, err = Listen(s.cfg.Redirect); err != nil {
			return nil, nil, err
		}
		defer l.Close()
	}
	c, err := s.client(ctx, ar.Discovery, l.URI, ar.DPoP != nil)
	if err != nil {
		return nil, nil, err
	}
	ar.Client, rec.Client = c, *c
	tok, err := s.e.AuthorizationCode(ctx, ar, l, in)
	return tok, c, err
}

// storeLogin completes rec with the new token (and a generated client
// key), stores it and makes it current.
func (s *Credential) storeLogin(rec *Record, tok *Token) error {
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

func (s *Credential) applyOverrides(as *ServerMetadata) {
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
func (s *Credential) selectScopes(d *Discovery, ch Challenge) []string {
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

// client returns the OAuth client to use with d.AS, in the spec's order:
// pre-registered, Client ID Metadata Document (when the AS supports it),
// a stored registration for this issuer, Dynamic Client Registration.
func (s *Credential) client(ctx context.Context, d *Discovery, redirectURI string, dpopBound bool) (*Client, error) {
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
	if c := s.storedRegistration(as.Issuer, redirectURI); c != nil {
		return c, nil
	}
	if redirectURI == "" {
		return nil, errors.New("this grant needs a client registered by hand: pass --client-id")
	}
	c, keyDER, err := s.e.Register(ctx, as, redirectURI, dpopBound)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(storedClient{*c, keyDER})
	if err := s.store.Put(ClientKeyOf(s.cfg.Profile, as.Issuer), raw); err != nil {
		return nil, fmt.Errorf("storing the client registration: %w", err)
	}
	return c, nil
}

// storedRegistration is the registration stored for issuer when it is
// still usable: for this issuer, not expired, and registered for
// redirectURI (any port on a loopback URI; any URI when the grant has
// none or the registration lists none).
func (s *Credential) storedRegistration(issuer, redirectURI string) *Client {
	raw, err := s.store.Get(ClientKeyOf(s.cfg.Profile, issuer))
	if err != nil || raw == nil {
		return nil
	}
	var c storedClient
	if json.Unmarshal(raw, &c) == nil && c.Issuer == issuer && c.ID != "" &&
		(c.ExpiresAt.IsZero() || c.ExpiresAt.After(s.e.Now())) &&
		(redirectURI == "" || slices.Contains(c.RedirectURIs, redirectURI) || len(c.RedirectURIs) == 0 || loopbackAnyPort(c.RedirectURIs, redirectURI)) {
		cl := c.Client
		if len(c.Key) > 0 {
			if k, ok := parseClientKey(c.Key); ok {
				cl.Key = k
			}
		}
		return &cl
	}
	return nil
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
