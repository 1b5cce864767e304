// Package authserver is mcpgate's built-in OAuth 2.1 authorization server
// (`authorization_server: builtin`): RFC 8414 / OpenID discovery metadata,
// authorization code with PKCE S256, PAR (RFC 9126), DPoP-bound tokens
// (RFC 9449), RFC 8707 resource indicators with audience-restricted JWT
// access tokens (RFC 9068), refresh token rotation with reuse detection,
// RFC 9207 iss, revocation (RFC 7009), introspection (RFC 7662), Dynamic
// Client Registration (RFC 7591), Client ID Metadata Documents, the client
// credentials grant, local users with consent pages, and rotating signing
// keys.
package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// Resource is one protected resource (a gateway upstream) tokens can be
// issued for.
type Resource struct {
	ID     string   // RFC 8707 identifier, the token's aud
	Scopes []string // scopes that may be granted for it
}

// StaticClient is a client configured by the operator (machines with the
// client credentials grant, or pre-registered apps).
type StaticClient struct {
	ID           string
	Secret       string // "" for a public client
	RedirectURIs []string
	GrantTypes   []string
	Scopes       []string
	Name         string
	// DPoPBound is the client's dpop_bound_access_tokens (RFC 9449 §5.2):
	// its token requests without a valid DPoP proof are refused.
	DPoPBound bool
	// JWKS (a JSON Web Key Set) or JWKSURI: the keys of a client that
	// authenticates with private_key_jwt (RFC 7523 §2.2).
	JWKS    []byte
	JWKSURI string
}

// Config configures the server.
type Config struct {
	Issuer    string // the gateway's public URL
	Resources []Resource
	Users     *Users
	Store     Store
	Log       *slog.Logger
	// AccessTokenTTL (default 10m), RefreshTokenTTL (default 30 days).
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// RefreshGrace is how long a just-rotated refresh token is still
	// accepted (concurrent refreshes); default 10s.
	RefreshGrace time.Duration
	// KeyRotation is how long a key signs (default 30 days).
	KeyRotation time.Duration
	// RequirePAR refuses authorization requests that were not pushed.
	RequirePAR bool
	// DPoPNonces, when set, makes the token and PAR endpoints demand a
	// server nonce in every DPoP proof (RFC 9449 §8). Share the gateway's
	// source so that one nonce serves the whole origin.
	DPoPNonces dpop.NonceSource
	// DPoPReplay is the token and PAR endpoints' DPoP jti store; default
	// in memory, 100000 entries, at most 1000 charged to one client.
	DPoPReplay dpop.ReplayStore
	// RegistrationToken, when set, protects /register (RFC 7591 initial
	// access token); "" means open registration.
	RegistrationToken string
	// DisableRegistration turns /register off.
	DisableRegistration bool
	Clients             []StaticClient
	// ExchangeResources are issued tokens only by the token exchange
	// grant (token_exchange.go): internal APIs behind upstreams.
	ExchangeResources []Resource
	// FetchClientMetadata fetches Client ID Metadata Documents; nil uses
	// an SSRF-safe fetcher (https only, public addresses, 5 s, 64 KiB).
	FetchClientMetadata func(ctx context.Context, url string) ([]byte, error)
	// SecureCookies marks cookies Secure (https issuers).
	SecureCookies bool
	// Federation, when set, signs users in at an upstream OpenID provider
	// instead of the local password form.
	Federation *Federation

	// Grants and registration (see grants_policy.go).

	// DefaultScopes is what an authorization request that names no scope
	// gets (intersected with the resource's and the client's scopes);
	// default none: a token never carries every scope because nobody
	// asked for fewer.
	DefaultScopes []string
	// RegistrationClientCredentialsScopes lets clients registered with
	// the initial access token (RegistrationToken) use the client
	// credentials grant, for these scopes only. Empty (default): no
	// self-registered client ever gets the client credentials grant;
	// with open registration it is never available.
	RegistrationClientCredentialsScopes []string
	// IntrospectionClients are the configured confidential clients that
	// may introspect (resource servers). Empty (default): nobody;
	// self-registered clients never.
	IntrospectionClients []string
	// RegistrationLimits bound Dynamic Client Registration; zero fields
	// take their defaults (see RegistrationLimits).
	RegistrationLimits RegistrationLimits
	// SignIn bounds password hashing and throttles failed sign-ins.
	SignIn SignInLimits
	// AuthorizeLimits bound the authorization requests /authorize and
	// /par store (see authorize_limits.go).
	AuthorizeLimits AuthorizeLimits
	// TrustedProxies are peers (IPs or CIDRs) whose X-Forwarded-For names
	// the client address sign-in throttling counts against.
	TrustedProxies []string

	// JWT bearer grants and private_key_jwt (enterprise.go).

	// TrustedIdPs are the IdPs whose ID-JAGs are accepted.
	TrustedIdPs []TrustedIdP
	// WorkloadIssuers are the trusted issuers of workload JWTs.
	WorkloadIssuers []WorkloadIssuer
	// AssertionReplay is the jti store of client assertions, ID-JAGs and
	// workload JWTs; default in memory. Share it (Redis) across replicas.
	AssertionReplay dpop.OwnedReplayStore
}

// Server is the authorization server.
type Server struct {
	cfg    Config
	keys   *keyring
	dpop   *dpop.Verifier
	cookie []byte // HMAC key for session and CSRF values
	mux    *http.ServeMux
	now    func() time.Time
	reg    *registrationLimiter
	// refreshMu serialises refresh-token rotation in this process, so
	// that two presentations of one token never both rotate it.
	refreshMu sync.Mutex

	hashes   *hashLimiter // password checks
	throttle *throttle    // failed sign-ins
	flows    *authorizeGuard
	proxies  []*net.IPNet
	ent      *enterprise // JWT bearer grants and remote key sets
}

// New builds a server on cfg.Store, creating or rotating its keys.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 10 * time.Minute
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	if cfg.RefreshGrace == 0 {
		cfg.RefreshGrace = 10 * time.Second
	}
	if cfg.DPoPReplay == nil {
		cfg.DPoPReplay = dpop.NewOwnedMemoryReplay(tokenReplayEntries, TokenReplayPerClient)
	}
	if cfg.KeyRotation == 0 {
		cfg.KeyRotation = 30 * 24 * time.Hour
	}
	if cfg.Users == nil {
		cfg.Users = &Users{}
	}
	if cfg.FetchClientMetadata == nil {
		cfg.FetchClientMetadata = fetchMetadataDocument
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Scheme == "" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("issuer %q is not an absolute URL without query or fragment", cfg.Issuer)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	cfg.SecureCookies = cfg.SecureCookies || u.Scheme == "https"
	cfg.SignIn = cfg.SignIn.withDefaults()
	s := &Server{cfg: cfg, now: time.Now, mux: http.NewServeMux(),
		keys:     &keyring{store: cfg.Store, period: cfg.KeyRotation, maxLife: cfg.AccessTokenTTL},
		dpop:     dpop.NewVerifier(dpop.VerifierOptions{Nonces: cfg.DPoPNonces, Replay: cfg.DPoPReplay}),
		hashes:   newHashLimiter(cfg.SignIn.MaxConcurrentHashes, cfg.SignIn.MaxQueuedHashes, cfg.SignIn.HashQueueTimeout),
		throttle: newThrottle(cfg.SignIn), proxies: parseProxies(cfg.TrustedProxies)}
	if err := s.keys.load(); err != nil {
		return nil, err
	}
	ck, err := cfg.Store.Get("meta", "cookie-key")
	if err != nil {
		return nil, err
	}
	if ck == nil {
		ck = []byte(randomID(32))
		if err := cfg.Store.Put("meta", "cookie-key", ck, 0); err != nil {
			return nil, err
		}
	}
	s.cookie = ck
	for _, c := range cfg.Clients {
		if c.ID == "" {
			return nil, errors.New("a configured client has no id")
		}
	}
	if err := s.initGrantPolicy(); err != nil {
		return nil, err
	}
	if err := s.initEnterprise(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Rotate checks the signing keys (call it daily).
func (s *Server) Rotate() error {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	return s.keys.rotateLocked(s.now())
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	s.mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
	s.mux.HandleFunc("GET /.well-known/openid-configuration", s.metadata)
	s.mux.HandleFunc("GET /jwks", s.jwks)
	s.mux.HandleFunc("/authorize", s.authorize)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("GET /federation/callback", s.federationCallback)
	s.mux.HandleFunc("POST /consent", s.consent)
	s.mux.HandleFunc("POST /par", s.par)
	s.mux.HandleFunc("POST /token", s.token)
	s.mux.HandleFunc("POST /register", s.register)
	s.mux.HandleFunc("POST /revoke", s.revoke)
	s.mux.HandleFunc("POST /introspect", s.introspect)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no endpoint at this path"})
	})
}

func (s *Server) url(path string) string { return s.cfg.Issuer + path }

func (s *Server) allScopes() []string {
	var out []string
	for _, r := range s.cfg.Resources {
		for _, sc := range r.Scopes {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	m := map[string]any{
		"issuer":                                         s.cfg.Issuer,
		"authorization_endpoint":                         s.url("/authorize"),
		"token_endpoint":                                 s.url("/token"),
		"jwks_uri":                                       s.url("/jwks"),
		"pushed_authorization_request_endpoint":          s.url("/par"),
		"require_pushed_authorization_requests":          s.cfg.RequirePAR,
		"revocation_endpoint":                            s.url("/revoke"),
		"introspection_endpoint":                         s.url("/introspect"),
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", "client_credentials", grantTokenExchange},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []string{"none", "client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                               s.allScopes(),
		"dpop_signing_alg_values_supported":              s.dpop.Algorithms(),
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          true,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"ES256"},
		"resource_indicators_supported":                  true,
	}
	if !s.cfg.DisableRegistration {
		m["registration_endpoint"] = s.url("/register")
	}
	s.enterpriseMetadata(m)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.keys.jwks())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// oauthError answers an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="mcpgate"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// mac signs a value for cookies and forms.
func (s *Server) mac(parts ...string) string {
	h := hmac.New(sha256.New, s.cookie)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
