package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/oauth"
)

// Connected accounts (upstream_auth.oauth): the gateway is an OAuth
// client of the upstream's authorization server, and each user connects
// their own account there once. A caller with a connection reaches the
// upstream with that user's token (refreshed before it expires, once per
// connection at a time); a caller without one is asked, by URL-mode
// elicitation, to open a connect URL on the gateway (connect_flow.go,
// connect_answer.go). The caller's own token never goes upstream.

// oauthSource is the credential source of one mount's connected accounts.
type oauthSource struct {
	m      *mount
	cfg    *config.UpstreamOAuth
	e      *oauth.Engine
	store  *sealedStore
	host   accountHost
	secret string // the pre-registered client's secret ("" for a public client)
	// csrfKey keys the accounts page's form values (derived from the token
	// key, so every replica computes the same).
	csrfKey []byte
	flows   *connectBudget
	// refreshing single-flights refreshes per connection (this process;
	// across replicas refreshLock adds a Redis lock when state.redis is set).
	refreshing flights

	mu       sync.Mutex // guards disc and discAt
	disc     *oauth.Discovery
	discAt   time.Time
	redirect string // the gateway's callback URL
}

// accountHost is the built-in authorization server as the connected
// accounts see it: the browser session and the store.
type accountHost interface {
	accountKV
	BrowserUser(r *http.Request) string
	AccountIssuer() string
	AccountPage(w http.ResponseWriter, status int, title, msg string, failed bool)
	AccountListPage(w http.ResponseWriter, user, action, csrf string, rows [][4]string)
}

// connectPath and callbackPath are the gateway's connect endpoints; the
// client metadata document (registration: cimd) is served at clientDocPath.
const (
	connectPath   = "/connect"
	callbackPath  = "/connect/callback"
	clientDocPath = "/connect/client-metadata.json"
	discoveryTTL  = 10 * time.Minute
)

// newOAuthSource builds the source of upstream u, or refuses a
// configuration the gateway cannot serve.
func (m *mount) newOAuthSource(u config.Upstream) (credentialSource, error) {
	if u.UpstreamAuth == nil || u.UpstreamAuth.OAuth == nil {
		return nil, nil
	}
	c := u.UpstreamAuth.OAuth
	host, ok := m.g.opts.AuthServer.(accountHost)
	if !ok {
		return nil, errors.New("upstream_auth.oauth needs authorization_server: builtin (the gateway checks who opens a connect URL by the built-in server's sign-in, and keeps the tokens in its store)")
	}
	if u.Transport != "streamable" {
		return nil, fmt.Errorf("upstream_auth.oauth needs a streamable upstream (transport is %s): the user's token travels in each HTTP request", u.Transport)
	}
	if h := http.CanonicalHeaderKey(u.UpstreamAuth.Header); h == "Authorization" || h == "Dpop" {
		return nil, errors.New("upstream_auth.header " + h + " would collide with the connected account's token: use another header or drop it")
	}
	key, err := readTokenKey(c, m.g.getenv)
	if err != nil {
		return nil, err
	}
	st, err := newSealedStore(host, key)
	if err != nil {
		return nil, err
	}
	ck := sha256.Sum256(append([]byte("mcpgate connected accounts csrf\x00"), key...))
	s := &oauthSource{m: m, cfg: c, store: st, host: host, csrfKey: ck[:], redirect: strings.TrimSuffix(m.g.cfg.PublicURL, "/") + callbackPath}
	if c.ClientSecretEnv != "" || c.ClientSecretFile != "" {
		if s.secret, err = config.ReadSecret("upstream_auth.oauth.client_secret_env", c.ClientSecretEnv, "upstream_auth.oauth.client_secret_file", c.ClientSecretFile, m.g.getenv); err != nil {
			return nil, err
		}
	}
	s.e = oauth.NewEngine(oauth.NewGuard(u.URL, false, false), nil, m.g.log.With("upstream", u.Name, "component", "connected-accounts"))
	s.flows = newConnectBudget(orDefault(c.MaxPending, config.DefaultMaxPending), orDefault(c.MaxPendingPerSubject, config.DefaultMaxPendingPerSubject))
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (s *oauthSource) connectTTL() time.Duration {
	return orDefault(s.cfg.ConnectTTL.Duration, config.DefaultConnectTTL)
}

func (s *oauthSource) refreshSkew() time.Duration {
	return orDefault(s.cfg.RefreshSkew.Duration, config.DefaultRefreshSkew)
}

// accountName is the store key of a user's connection at this upstream.
func (s *oauthSource) accountName(issuer, subject string) string {
	return name("account", issuer, subject, s.m.name)
}

// addTo sets the caller's upstream token, or asks the caller to connect.
func (s *oauthSource) addTo(ctx context.Context, c credCaller, h http.Header) error {
	conn, err := s.load(c.p.Issuer, c.p.Subject)
	if err != nil {
		return err
	}
	if conn == nil {
		return s.connectRequired(c)
	}
	if conn.Token.Stale(time.Now(), s.refreshSkew()) {
		if conn, err = s.refresh(ctx, conn); err != nil {
			if errors.Is(err, oauth.ErrLoginRequired) {
				return s.connectRequired(c)
			}
			return err
		}
	}
	return s.apply(conn, c.r, h)
}

// load reads the caller's connection (nil when there is none).
func (s *oauthSource) load(issuer, subject string) (*connection, error) {
	var conn connection
	key := s.accountName(issuer, subject)
	found, err := s.store.get(bucketAccounts, key, &conn)
	if err != nil {
		return nil, fmt.Errorf("reading the connected account: %w", err)
	}
	// the record names its owner, sealed: a mismatch is never used
	if !found || conn.Issuer != issuer || conn.Subject != subject || conn.Upstream != s.m.name {
		return nil, nil
	}
	return &conn, nil
}

// apply writes the token to the upstream headers: Bearer, or DPoP with a
// proof for this request's method and the upstream URL (RFC 9449 §7.1).
func (s *oauthSource) apply(conn *connection, r *http.Request, h http.Header) error {
	if !conn.Token.DPoP() {
		h.Set("Authorization", "Bearer "+conn.Token.AccessToken)
		return nil
	}
	key, err := oauth.ParseDPoPKey(conn.DPoPKey)
	if err != nil {
		return err
	}
	method := http.MethodPost
	if r != nil {
		method = r.Method
	}
	proof, err := key.Proof(method, s.m.cfg.URL, dpop.ProofOptions{AccessToken: conn.Token.AccessToken})
	if err != nil {
		return err
	}
	h.Set("Authorization", "DPoP "+conn.Token.AccessToken)
	h.Set("DPoP", proof)
	return nil
}

// save stores conn under its owner's name (no expiry: the refresh token
// outlives the access token; disconnecting deletes it).
func (s *oauthSource) save(conn *connection) error {
	return s.store.put(bucketAccounts, s.accountName(conn.Issuer, conn.Subject), conn, 0)
}

// discovery finds the upstream's authorization server: the configured
// issuer's metadata, else the upstream's RFC 9728 metadata (as `mcpgate
// call` does). Kept for discoveryTTL.
func (s *oauthSource) discovery(ctx context.Context) (*oauth.Discovery, error) {
	s.mu.Lock()
	if s.disc != nil && time.Since(s.discAt) < discoveryTTL {
		d := s.disc
		s.mu.Unlock()
		return d, nil
	}
	s.mu.Unlock()
	var d *oauth.Discovery
	var err error
	if s.cfg.Issuer != "" {
		d, err = s.configuredDiscovery(ctx)
	} else {
		d, err = s.e.Discover(ctx, s.m.cfg.URL, oauth.Challenge{}, "")
	}
	if err != nil {
		return nil, fmt.Errorf("discovering the upstream's authorization server: %w", err)
	}
	s.mu.Lock()
	s.disc, s.discAt = d, time.Now()
	s.mu.Unlock()
	return d, nil
}

func (s *oauthSource) configuredDiscovery(ctx context.Context) (*oauth.Discovery, error) {
	canon, err := oauth.CanonicalResource(s.m.cfg.URL)
	if err != nil {
		return nil, err
	}
	d := &oauth.Discovery{ServerURL: s.m.cfg.URL, Resource: canon}
	as, err := s.e.FetchServerMetadata(ctx, d, s.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	d.AS = as
	return d, nil
}

// scopes are the configured scopes, else what the upstream publishes.
func (s *oauthSource) scopes(d *oauth.Discovery) []string {
	if len(s.cfg.Scopes) > 0 {
		return s.cfg.Scopes
	}
	if d.PRM != nil {
		return d.PRM.ScopesSupported
	}
	return nil
}

// useDPoP decides whether to bind the upstream tokens (dpop: auto, off,
// required).
func (s *oauthSource) useDPoP(as *oauth.ServerMetadata) (bool, error) {
	offered := slices.Contains(as.DPoPSigningAlgs, "ES256")
	switch s.cfg.DPoP {
	case "off":
		return false, nil
	case "required":
		if !offered {
			return false, fmt.Errorf("upstream_auth.oauth.dpop is required, but %s does not offer ES256 DPoP proofs", as.Issuer)
		}
	}
	return offered, nil
}

// authRequest is the authorization request of a new connection.
func (s *oauthSource) authRequest(d *oauth.Discovery, c *oauth.Client, key *oauth.DPoPKey) *oauth.AuthRequest {
	ar := &oauth.AuthRequest{Discovery: d, Client: c, Scopes: s.scopes(d), NoResource: s.cfg.NoResource, DPoP: key, NoPAR: s.cfg.PAR == "off"}
	if len(s.cfg.AuthorizationParams) > 0 {
		ar.Extra = url.Values{}
		for k, v := range s.cfg.AuthorizationParams {
			ar.Extra.Set(k, v)
		}
	}
	return ar
}

// clientFor returns the client a stored connection or flow names, with the
// configured secret of a pre-registered client (never stored).
func (s *oauthSource) clientFor(c oauth.Client) *oauth.Client {
	if c.Kind == "preregistered" {
		c.Secret = s.secret
	}
	return &c
}
