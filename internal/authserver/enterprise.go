package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// The RFC 7523 JWT bearer grant and the profiles built on it:
// Enterprise-Managed Authorization (ID-JAG, idjag.go) and Workload
// Identity Federation (workload.go). See docs/enterprise.md.
const (
	grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	profileIDJAG   = "urn:ietf:params:oauth:grant-profile:id-jag"
	typIDJAG       = "oauth-id-jag+jwt"
	// profileWorkload names Workload Identity Federation in audit and in
	// the mcpgate_grant claim (the draft defines no profile URN).
	profileWorkload    = "workload-identity-federation"
	clientAssertionJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// TrustedIdP is an enterprise IdP whose ID-JAGs this server accepts.
type TrustedIdP struct {
	Issuer  string
	JWKSURI string // "" = OpenID discovery at Issuer
	// Fetch reads its discovery document and keys; nil: TLS with the
	// system roots (see issuerFetcher).
	Fetch        FetchFunc
	ClientIDs    []string
	EmailDomains []string
	GroupsClaim  string // default "groups"
	Groups       []string
	Scopes       []ScopeRule
	MaxLifetime  time.Duration // default 10m
}

// ScopeRule grants Scopes of Resource ("" = any) to members of Groups
// (none = everyone the IdP rules admit).
type ScopeRule struct {
	Resource string
	Groups   []string
	Scopes   []string
}

// WorkloadIssuer is a trusted issuer of workload JWTs.
type WorkloadIssuer struct {
	Issuer      string
	JWKSURI     string // "" = OpenID discovery at Issuer (https)
	Fetch       FetchFunc
	Audience    string        // default the token endpoint
	MaxLifetime time.Duration // default 1h
	Subjects    []WorkloadRule
}

// WorkloadRule maps workloads (Subject pattern, Claims equal) to Scopes
// of Resource.
type WorkloadRule struct {
	Subject  string
	Claims   map[string]string
	Resource string
	Scopes   []string
}

// grantSource is the mcpgate_grant claim of tokens of the JWT bearer
// grants: the grant type, the profile (id-jag or workload) and the IdP or
// workload issuer that vouched for the subject. The gateway audits it.
type grantSource struct {
	Type    string `json:"type"`
	Profile string `json:"profile"`
	Issuer  string `json:"iss"`
}

// NewIssuerFetcher is the fetcher for an operator-configured issuer: TLS
// verified with the system roots plus caFile (PEM, "" for none); http is
// accepted only when allowHTTP (loopback IdPs in tests).
func NewIssuerFetcher(caFile string, allowHTTP bool) (FetchFunc, error) {
	return issuerFetcher(caFile, allowHTTP)
}

// enterprise is the state of the JWT bearer grants.
type enterprise struct {
	// keys caches the trusted issuers' key sets; clientKeys those of
	// clients (jwks_uri), which anyone can register: kept apart so that
	// a client naming an issuer's URL can neither evict nor poison it.
	keys, clientKeys *keySets
	mu               sync.Mutex            // guards jwks
	jwks             map[string]discovered // issuer → its discovered jwks_uri
}

// initEnterprise applies defaults and checks the trusted issuers.
func (s *Server) initEnterprise() error {
	now := func() time.Time { return s.now() }
	s.ent = &enterprise{keys: newKeySets(now), clientKeys: newKeySets(now), jwks: map[string]discovered{}}
	if s.cfg.AssertionReplay == nil {
		s.cfg.AssertionReplay = dpop.NewOwnedMemoryReplay(assertionReplayEntries, AssertionReplayPerOwner)
	}
	for i := range s.cfg.TrustedIdPs {
		p := &s.cfg.TrustedIdPs[i]
		if p.Issuer == "" || len(p.ClientIDs) == 0 {
			return errors.New("a trusted IdP needs an issuer and the client ids that may present its ID-JAGs")
		}
		if p.GroupsClaim == "" {
			p.GroupsClaim = "groups"
		}
		if p.MaxLifetime == 0 {
			p.MaxLifetime = 10 * time.Minute
		}
		if p.Fetch == nil {
			f, err := issuerFetcher("", false)
			if err != nil {
				return err
			}
			p.Fetch = f
		}
	}
	for i := range s.cfg.WorkloadIssuers {
		wi := &s.cfg.WorkloadIssuers[i]
		if wi.Issuer == "" || len(wi.Subjects) == 0 {
			return errors.New("a trusted workload issuer needs an issuer and subject rules")
		}
		if wi.JWKSURI == "" && !strings.HasPrefix(wi.Issuer, "https://") {
			return fmt.Errorf("workload issuer %q: keys are fetched over TLS only; give an https jwks_uri", wi.Issuer)
		}
		if wi.Audience == "" {
			wi.Audience = s.url("/token")
		}
		if wi.MaxLifetime == 0 {
			wi.MaxLifetime = time.Hour
		}
		if wi.Fetch == nil {
			f, err := issuerFetcher("", false)
			if err != nil {
				return err
			}
			wi.Fetch = f
		}
	}
	return nil
}

// enterpriseMetadata adds what the JWT bearer grants and private_key_jwt
// need to the server metadata (RFC 8414; ID-JAG draft §7.2; WIF draft).
func (s *Server) enterpriseMetadata(m map[string]any) {
	for _, k := range []string{"token_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported"} {
		if v, ok := m[k].([]string); ok {
			m[k] = append(slices.Clone(v), "private_key_jwt")
			m[strings.TrimSuffix(k, "methods_supported")+"signing_alg_values_supported"] = algNames()
		}
	}
	if len(s.cfg.TrustedIdPs) == 0 && len(s.cfg.WorkloadIssuers) == 0 {
		return
	}
	if v, ok := m["grant_types_supported"].([]string); ok && !slices.Contains(v, grantJWTBearer) {
		m["grant_types_supported"] = append(slices.Clone(v), grantJWTBearer)
	}
	if len(s.cfg.TrustedIdPs) > 0 {
		m["authorization_grant_profiles_supported"] = []string{profileIDJAG}
	}
}

func algNames() []string {
	out := make([]string, len(assertionAlgs))
	for i, a := range assertionAlgs {
		out[i] = string(a)
	}
	return out
}

// jwtBearer answers a token request with the JWT bearer grant and reports
// whether it was one. An ID-JAG (typ oauth-id-jag+jwt) goes to the
// enterprise rules and needs client authentication; any other assertion
// is a workload JWT and needs none (WIF draft).
func (s *Server) jwtBearer(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != grantJWTBearer {
		return false
	}
	w.Header().Set("Pragma", "no-cache")
	if len(r.PostForm["assertion"]) != 1 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "send exactly one assertion parameter (the JWT)")
		return true
	}
	a, err := parseAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return true
	}
	if a.typ == typIDJAG {
		s.idJAGGrant(w, r, a)
	} else {
		s.workloadGrant(w, r, a)
	}
	return true
}

// issuerKeys fetches the keys of a trusted issuer (configured jwks_uri, or
// the one its OpenID discovery document names).
func (s *Server) issuerKeys(ctx context.Context, issuer, jwksURI, kid string, fetch FetchFunc) ([]jose.JSONWebKey, error) {
	if jwksURI == "" {
		var err error
		if jwksURI, err = s.discoverJWKS(ctx, issuer, fetch); err != nil {
			return nil, err
		}
	}
	return s.ent.keys.keys(ctx, jwksURI, kid, fetch)
}

// discoverJWKS reads jwks_uri from the issuer's OpenID configuration
// (whose issuer must match). A discovered URL is kept for keySetTTL; a
// failed discovery is not retried for keySetMinRefresh, so an
// unauthenticated caller naming a trusted issuer cannot make one fetch
// per request.
func (s *Server) discoverJWKS(ctx context.Context, issuer string, fetch FetchFunc) (string, error) {
	s.ent.mu.Lock()
	d := s.ent.jwks[issuer]
	now := s.now()
	if d.url != "" && now.Sub(d.at) < keySetTTL {
		s.ent.mu.Unlock()
		return d.url, nil
	}
	if d.err != nil && now.Sub(d.at) < keySetMinRefresh {
		s.ent.mu.Unlock()
		return "", d.err
	}
	s.ent.jwks[issuer] = discovered{url: d.url, at: now, err: errors.New("discovery of " + issuer + " is under way; retry")}
	s.ent.mu.Unlock()
	u, err := discover(ctx, issuer, fetch)
	s.ent.mu.Lock()
	defer s.ent.mu.Unlock()
	if err != nil {
		s.ent.jwks[issuer] = discovered{at: now, err: err}
		return "", err
	}
	s.ent.jwks[issuer] = discovered{url: u, at: now}
	return u, nil
}

// discovered is the outcome of one discovery.
type discovered struct {
	url string
	at  time.Time
	err error
}

func discover(ctx context.Context, issuer string, fetch FetchFunc) (string, error) {
	body, err := fetch(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", fmt.Errorf("discovering the keys of %s: %v", issuer, err)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &md); err != nil || md.Issuer != issuer || md.JWKSURI == "" {
		return "", fmt.Errorf("the OpenID configuration of %s does not name this issuer and a jwks_uri", issuer)
	}
	return md.JWKSURI, nil
}
