package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// client is a registered, configured or metadata-document client.
type client struct {
	ID           string    `json:"client_id"`
	SecretHash   string    `json:"secret_hash,omitempty"`
	Name         string    `json:"client_name,omitempty"`
	RedirectURIs []string  `json:"redirect_uris"`
	GrantTypes   []string  `json:"grant_types"`
	AuthMethod   string    `json:"token_endpoint_auth_method"`
	Scopes       []string  `json:"scopes,omitempty"` // empty: any offered scope
	Kind         string    `json:"kind"`             // static, dcr, cimd
	Created      time.Time `json:"created"`
	// WithToken: registered with the initial access token (the only
	// registration path that can be allowed the client credentials grant).
	WithToken bool `json:"with_token,omitempty"`
	// DPoPBound is dpop_bound_access_tokens (RFC 9449 §5.2): every token
	// request of this client must carry a valid DPoP proof.
	DPoPBound bool `json:"dpop_bound_access_tokens,omitempty"`
	// Used: when the client first completed a grant; a registered client
	// that never does expires (RegistrationLimits.UnusedClientTTL).
	Used   time.Time `json:"used,omitzero"`
	secret string    // static clients: plain secret from config
	// JWKS or JWKSURI: the keys of a private_key_jwt client.
	JWKS    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI string          `json:"jwks_uri,omitempty"`
	// source: set on the copy a JWT bearer grant issues with.
	source *grantSource
}

func (c *client) public() bool { return c.AuthMethod == "none" || c.AuthMethod == "" }

func (c *client) allows(grant string) bool { return slices.Contains(c.GrantTypes, grant) }

// lookup finds a client: configured, registered, or a Client ID Metadata
// Document (an https URL), fetched and cached.
func (s *Server) lookup(ctx context.Context, id string) (*client, error) {
	for _, sc := range s.cfg.Clients {
		if sc.ID == id {
			c := &client{ID: sc.ID, Name: sc.Name, RedirectURIs: sc.RedirectURIs, GrantTypes: sc.GrantTypes, Scopes: sc.Scopes, Kind: "static", secret: sc.Secret, AuthMethod: "none", DPoPBound: sc.DPoPBound}
			if sc.Secret != "" {
				c.AuthMethod = "client_secret_basic"
			}
			if len(sc.JWKS) > 0 || sc.JWKSURI != "" {
				c.AuthMethod, c.JWKS, c.JWKSURI = authPrivateKeyJWT, sc.JWKS, sc.JWKSURI
			}
			if len(c.GrantTypes) == 0 {
				c.GrantTypes = []string{"authorization_code", "refresh_token"}
			}
			return c, nil
		}
	}
	if raw, err := s.cfg.Store.Get("clients", id); err != nil {
		return nil, err
	} else if raw != nil {
		var c client
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		return &c, nil
	}
	if strings.HasPrefix(id, "https://") {
		return s.metadataDocumentClient(ctx, id)
	}
	return nil, nil
}

// authenticate checks client authentication at the token, PAR, revocation
// and introspection endpoints. A public client only names itself.
func (s *Server) authenticate(r *http.Request) (*client, error) {
	if r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type") {
		return s.authenticateAssertion(r)
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return nil, errors.New("no client_id")
	}
	c, err := s.lookup(r.Context(), id)
	if err != nil || c == nil {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	if c.public() {
		if secret != "" {
			return nil, errors.New("a public client has no secret")
		}
		return c, nil
	}
	if c.AuthMethod == authPrivateKeyJWT {
		return nil, errors.New("this client authenticates with private_key_jwt: send client_assertion and client_assertion_type (RFC 7523 §2.2)")
	}
	if secret == "" {
		return nil, errors.New("client authentication required")
	}
	ok := false
	if c.secret != "" {
		ok = subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) == 1
	} else {
		ok = subtle.ConstantTimeCompare([]byte(hashToken(secret)), []byte(c.SecretHash)) == 1
	}
	if !ok {
		return nil, errors.New("wrong client secret")
	}
	return c, nil
}

// clientRequest parses a form POST to the token, PAR, revocation or
// introspection endpoint and authenticates its client; on failure it has
// answered.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (*client, bool) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return nil, false
	}
	c, err := s.authenticate(r)
	var use assertionUseError
	if errors.As(err, &use) && !errors.Is(err, errReplayed) {
		replayError(w, use.err, "invalid_client", "the client_assertion") // the jti store could not answer: 503
		return nil, false
	}
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return nil, false
	}
	return c, true
}

// redirectAllowed: exact match, except that loopback redirect URIs of
// native clients may use any port (RFC 8252 §7.3).
func (c *client) redirectAllowed(uri string) bool {
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !isLoopbackHost(u.Hostname()) {
		return false
	}
	for _, r := range c.RedirectURIs {
		ru, err := url.Parse(r)
		if err == nil && ru.Scheme == "http" && ru.Hostname() == u.Hostname() && ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// validRedirect: https, or http on a loopback host; no fragment; no
// javascript:/data: and friends.
func validRedirect(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || u.Fragment != "" || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())
}

// metadataDocumentClient fetches and validates a Client ID Metadata
// Document; results are cached for 10 minutes.
func (s *Server) metadataDocumentClient(ctx context.Context, id string) (*client, error) {
	if raw, _ := s.cfg.Store.Get("cimd", id); raw != nil {
		var c client
		if json.Unmarshal(raw, &c) == nil {
			return &c, nil
		}
	}
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Path == "" || u.Path == "/" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("client_id %q is not a valid metadata document URL", id)
	}
	body, err := s.cfg.FetchClientMetadata(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fetching the client metadata document %s: %v", id, err)
	}
	var md struct {
		ClientID     string          `json:"client_id"`
		Name         string          `json:"client_name"`
		RedirectURIs []string        `json:"redirect_uris"`
		GrantTypes   []string        `json:"grant_types"`
		AuthMethod   string          `json:"token_endpoint_auth_method"`
		DPoPBound    bool            `json:"dpop_bound_access_tokens"`
		JWKSURI      string          `json:"jwks_uri"`
		JWKS         json.RawMessage `json:"jwks"`
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("client metadata document %s is not JSON: %v", id, err)
	}
	if md.ClientID != id {
		return nil, fmt.Errorf("client metadata document %s names client_id %q", id, md.ClientID)
	}
	if err := s.checkMetadataFields(md.Name, md.RedirectURIs); err != nil {
		return nil, fmt.Errorf("client metadata document %s: %v", id, err)
	}
	method, err := cimdAuthMethod(md.AuthMethod, md.JWKSURI, md.JWKS)
	if err != nil {
		return nil, fmt.Errorf("client metadata document %s: %v", id, err)
	}
	for _, r := range md.RedirectURIs {
		if !validRedirect(r) {
			return nil, fmt.Errorf("client metadata document %s has an invalid redirect URI %q", id, r)
		}
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{"authorization_code"}
	}
	c := &client{ID: id, Name: md.Name, RedirectURIs: md.RedirectURIs, GrantTypes: slices.DeleteFunc(md.GrantTypes, func(g string) bool { return g == "client_credentials" }),
		AuthMethod: method, Kind: "cimd", Created: s.now(), DPoPBound: md.DPoPBound, JWKSURI: md.JWKSURI, JWKS: md.JWKS}
	raw, _ := json.Marshal(c)
	_ = s.cfg.Store.Put("cimd", id, raw, 10*time.Minute)
	return c, nil
}

// fetchMetadataDocument is the SSRF-safe fetcher: https only, public
// addresses only (checked on the dialled address), no redirects, 5 s,
// 64 KiB.
func fetchMetadataDocument(ctx context.Context, raw string) ([]byte, error) {
	d := &net.Dialer{Timeout: 3 * time.Second, Control: func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		a := ap.Addr().Unmap()
		if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || a.IsMulticast() ||
			netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
			return fmt.Errorf("refusing to fetch from %s: not a public address", a)
		}
		return nil
	}}
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: 3 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 64<<10 {
		return nil, errors.New("larger than 64 KiB")
	}
	return b, nil
}
