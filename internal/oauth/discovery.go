package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// ResourceMetadata is RFC 9728 protected resource metadata.
type ResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	DPoPSigningAlgs        []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPBoundRequired      bool     `json:"dpop_bound_access_tokens_required,omitempty"`
	// Source is the URL the document was read from.
	Source string `json:"-"`
}

// ServerMetadata is RFC 8414 / OpenID Connect discovery metadata.
type ServerMetadata struct {
	Issuer                       string   `json:"issuer"`
	AuthorizationEndpoint        string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                string   `json:"token_endpoint,omitempty"`
	RegistrationEndpoint         string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint           string   `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint        string   `json:"introspection_endpoint,omitempty"`
	DeviceAuthorizationEndpoint  string   `json:"device_authorization_endpoint,omitempty"`
	PAREndpoint                  string   `json:"pushed_authorization_request_endpoint,omitempty"`
	RequirePAR                   bool     `json:"require_pushed_authorization_requests,omitempty"`
	ScopesSupported              []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported       []string `json:"response_types_supported,omitempty"`
	GrantTypesSupported          []string `json:"grant_types_supported,omitempty"`
	CodeChallengeMethods         []string `json:"code_challenge_methods_supported,omitempty"`
	TokenEndpointAuthMethods     []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	DPoPSigningAlgs              []string `json:"dpop_signing_alg_values_supported,omitempty"`
	ISSParameterSupported        bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
	CIMDSupported                bool     `json:"client_id_metadata_document_supported,omitempty"`
	// Source is the URL the document was read from ("" for the 2025-03-26
	// default endpoints).
	Source string `json:"-"`
	// Legacy marks metadata found by the 2025-03-26 fallbacks (no
	// protected resource metadata): PKCE support is then assumed.
	Legacy bool `json:"-"`
}

// Discovery is what the discovery chain found for one MCP server.
type Discovery struct {
	ServerURL string
	// Resource is the RFC 8707 resource indicator to send: the PRM
	// resource exactly as published, else the canonical server URL.
	Resource string
	PRM      *ResourceMetadata // nil for 2025-03-26 servers
	AS       *ServerMetadata
	// Tried lists every URL fetched, in order, with its outcome (doctor).
	Tried []Probe
}

// Probe is one metadata request made during discovery.
type Probe struct {
	URL    string
	Status int    // HTTP status, 0 when the request failed
	Result string // "used", "not found", an error
}

// ErrResourceMismatch: the protected resource metadata names another
// resource than the server; authorization must not start.
var ErrResourceMismatch = errors.New("protected resource metadata is for another resource")

const maxMetadataBytes = 1 << 20

// CanonicalResource returns the RFC 8707 canonical form of an MCP server
// URL: lowercase scheme and host, no default port, no fragment, no
// trailing slash on a path (a bare "/" path is dropped).
func CanonicalResource(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute URL", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	}
	u.Fragment, u.RawFragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// resourceCovers reports whether the PRM resource identifies the server:
// identical, or a path prefix of it on the same origin.
func resourceCovers(resource, server string) bool {
	r, err1 := CanonicalResource(resource)
	s, err2 := CanonicalResource(server)
	if err1 != nil || err2 != nil {
		return false
	}
	if r == s {
		return true
	}
	ru, _ := url.Parse(r)
	su, _ := url.Parse(s)
	if ru.Scheme != su.Scheme || ru.Host != su.Host || ru.RawQuery != "" {
		return false
	}
	return ru.Path == "" || strings.HasPrefix(su.Path, ru.Path+"/")
}

// fetchJSON GETs a metadata document. It returns the HTTP status (0 on a
// transport error).
func (e *Engine) fetchJSON(ctx context.Context, rawURL, what string, v any) (int, error) {
	return e.fetchJSONVersion(ctx, rawURL, what, v, e.ProtocolVersion)
}

// fetchJSONVersion is fetchJSON with an explicit MCP-Protocol-Version
// ("" sends none).
func (e *Engine) fetchJSONVersion(ctx context.Context, rawURL, what string, v any, version string) (int, error) {
	if err := e.Guard.CheckURL(rawURL, what); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if version != "" {
		req.Header.Set("MCP-Protocol-Version", version)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s at %s: reading: %w", what, rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s at %s: HTTP %d", what, rawURL, resp.StatusCode)
	}
	if len(body) > maxMetadataBytes {
		return resp.StatusCode, fmt.Errorf("%s at %s is larger than %d bytes", what, rawURL, maxMetadataBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s at %s is not valid JSON: %v", what, rawURL, err)
	}
	return resp.StatusCode, nil
}

// wellKnown builds "<origin>/.well-known/<name><path>" (path insertion).
func wellKnown(u *url.URL, name, path string) string {
	return u.Scheme + "://" + u.Host + "/.well-known/" + name + strings.TrimSuffix(path, "/")
}

// ResourceMetadataURLs lists the PRM locations in the spec's order: the
// challenge's resource_metadata, then the path-aware well-known URI, then
// the root one (never root first).
func ResourceMetadataURLs(serverURL, fromChallenge string) []string {
	var out []string
	if fromChallenge != "" {
		out = append(out, fromChallenge)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return out
	}
	if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
		out = append(out, wellKnown(u, "oauth-protected-resource", p))
	}
	root := wellKnown(u, "oauth-protected-resource", "")
	if !slices.Contains(out, root) {
		out = append(out, root)
	}
	return out
}

// ServerMetadataURLs lists the AS metadata locations for an issuer in the
// MCP probe order (C6): for an issuer with a path, RFC 8414 path-inserted,
// OIDC path-inserted, OIDC path-appended — never the root documents; for
// an issuer without a path, RFC 8414 then OIDC at the root.
func ServerMetadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("issuer %q is not an absolute URL", issuer)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("issuer %q has a query or fragment (RFC 8414 §2)", issuer)
	}
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return []string{wellKnown(u, "oauth-authorization-server", ""), wellKnown(u, "openid-configuration", "")}, nil
	}
	return []string{
		wellKnown(u, "oauth-authorization-server", p),
		wellKnown(u, "openid-configuration", p),
		u.Scheme + "://" + u.Host + p + "/.well-known/openid-configuration",
	}, nil
}

// FetchResourceMetadata walks the PRM locations; it returns nil (and no
// error) when none exists, which marks a 2025-03-26 server.
func (e *Engine) FetchResourceMetadata(ctx context.Context, d *Discovery, fromChallenge string) (*ResourceMetadata, error) {
	var lastErr error
	onlyNotFound := true
	for _, u := range ResourceMetadataURLs(d.ServerURL, fromChallenge) {
		var m ResourceMetadata
		status, err := e.fetchJSON(ctx, u, "protected resource metadata", &m)
		if err == nil && m.Resource == "" {
			err = fmt.Errorf("protected resource metadata at %s has no resource", u)
		}
		if err != nil {
			d.Tried = append(d.Tried, Probe{URL: u, Status: status, Result: err.Error()})
			if status == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			lastErr = err
			if status != http.StatusNotFound {
				onlyNotFound = false
			}
			continue
		}
		d.Tried = append(d.Tried, Probe{URL: u, Status: status, Result: "used"})
		m.Source = u
		return &m, nil
	}
	// A server that announced its metadata, or whose metadata requests
	// failed for another reason than 404, is not a 2025-03-26 server.
	if (fromChallenge != "" || !onlyNotFound) && lastErr != nil {
		return nil, lastErr
	}
	return nil, nil
}

// FetchServerMetadata reads and validates AS metadata for issuer: the
// document's issuer must be identical to the one used to build the URL.
func (e *Engine) FetchServerMetadata(ctx context.Context, d *Discovery, issuer string) (*ServerMetadata, error) {
	urls, err := ServerMetadataURLs(issuer)
	if err != nil {
		return nil, err
	}
	var errs []string
	for _, u := range urls {
		var m ServerMetadata
		status, err := e.fetchJSON(ctx, u, "authorization server metadata", &m)
		if err == nil && m.Issuer != issuer {
			err = fmt.Errorf("authorization server metadata at %s names issuer %q, not %q: refusing it (mix-up protection)", u, m.Issuer, issuer)
		}
		if err != nil {
			d.Tried = append(d.Tried, Probe{URL: u, Status: status, Result: err.Error()})
			errs = append(errs, err.Error())
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		d.Tried = append(d.Tried, Probe{URL: u, Status: status, Result: "used"})
		m.Source = u
		return &m, nil
	}
	return nil, fmt.Errorf("no usable authorization server metadata for %s: %s", issuer, strings.Join(errs, "; "))
}

// Discover runs the MCP discovery chain for serverURL. challenge is the
// Bearer/DPoP challenge of the 401 that started it (may be zero).
// issuerChoice selects one of several authorization servers ("" = first).
func (e *Engine) Discover(ctx context.Context, serverURL string, challenge Challenge, issuerChoice string) (*Discovery, error) {
	canon, err := CanonicalResource(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	d := &Discovery{ServerURL: serverURL, Resource: canon}
	prm, err := e.FetchResourceMetadata(ctx, d, challenge.Param("resource_metadata"))
	if err != nil {
		return d, err
	}
	if prm == nil {
		as, err := e.legacyMetadata(ctx, d)
		if err != nil {
			return d, err
		}
		d.AS = as
		return d, nil
	}
	d.PRM = prm
	if !resourceCovers(prm.Resource, serverURL) {
		return d, fmt.Errorf("%w: %s publishes resource %q, but the server is %s; not starting authorization (a server may not claim another resource's tokens)", ErrResourceMismatch, prm.Source, prm.Resource, canon)
	}
	d.Resource = prm.Resource
	if len(prm.AuthorizationServers) == 0 {
		return d, fmt.Errorf("protected resource metadata at %s lists no authorization_servers; ask the server operator, or pass --issuer", prm.Source)
	}
	issuer := prm.AuthorizationServers[0]
	if issuerChoice != "" {
		if !slices.Contains(prm.AuthorizationServers, issuerChoice) {
			return d, fmt.Errorf("--issuer %s is not one of the server's authorization servers %v", issuerChoice, prm.AuthorizationServers)
		}
		issuer = issuerChoice
	}
	as, err := e.FetchServerMetadata(ctx, d, issuer)
	if err != nil {
		return d, err
	}
	d.AS = as
	return d, nil
}

// legacyMetadata implements the 2025-03-26 fallbacks for servers without
// protected resource metadata: AS metadata at the MCP server's origin,
// else the default endpoints /authorize, /token and /register.
func (e *Engine) legacyMetadata(ctx context.Context, d *Discovery) (*ServerMetadata, error) {
	u, err := url.Parse(d.ServerURL)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	var m ServerMetadata
	mu := origin + "/.well-known/oauth-authorization-server"
	// 2025-03-26 §2.3.2: clients SHOULD send MCP-Protocol-Version here
	status, err := e.fetchJSONVersion(ctx, mu, "authorization server metadata (2025-03-26)", &m, "2025-03-26")
	if err == nil {
		d.Tried = append(d.Tried, Probe{URL: mu, Status: status, Result: "used"})
		m.Source, m.Legacy = mu, true
		if m.Issuer == "" {
			m.Issuer = origin
		}
		return &m, nil
	}
	d.Tried = append(d.Tried, Probe{URL: mu, Status: status, Result: err.Error()})
	if status != http.StatusNotFound {
		return nil, fmt.Errorf("no protected resource metadata, and %v", err)
	}
	return &ServerMetadata{
		Issuer:                origin,
		AuthorizationEndpoint: origin + "/authorize",
		TokenEndpoint:         origin + "/token",
		RegistrationEndpoint:  origin + "/register",
		Legacy:                true,
	}, nil
}
