package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// TrustedIdP is an enterprise identity provider whose Identity Assertion
// JWT Authorization Grants (ID-JAG, MCP Enterprise-Managed Authorization)
// the built-in authorization server accepts at its token endpoint with
// grant_type urn:ietf:params:oauth:grant-type:jwt-bearer.
type TrustedIdP struct {
	// Issuer is the IdP's issuer identifier (the ID-JAG's iss). https, or
	// http on a loopback host (tests).
	Issuer string `yaml:"issuer"`
	// JWKSURI is where its signing keys are; default: OpenID discovery at
	// the issuer.
	JWKSURI string `yaml:"jwks_uri"`
	// CAFile: PEM roots for the IdP's TLS certificate besides the system's.
	CAFile string `yaml:"ca_file"`
	// ClientIDs: the clients (ids at this server) that may present its
	// ID-JAGs. Required.
	ClientIDs []string `yaml:"client_ids"`
	// EmailDomains: when set, the ID-JAG must carry an email claim in one
	// of these domains.
	EmailDomains []string `yaml:"email_domains"`
	// GroupsClaim names the claim holding the user's groups (default
	// "groups"); Groups, when set, requires one of them.
	GroupsClaim string   `yaml:"groups_claim"`
	Groups      []string `yaml:"groups"`
	// Scopes is the scope mapping: what a user may get, per resource and
	// group. Required: no rule, no scope.
	Scopes []IdPScopeRule `yaml:"scopes"`
	// MaxLifetime bounds exp - iat of an accepted ID-JAG. Default 10m.
	MaxLifetime Duration `yaml:"max_lifetime"`
}

// IdPScopeRule grants scopes of one resource (or of every resource when
// Resource is empty) to the IdP's users, or to members of Groups.
type IdPScopeRule struct {
	Resource string   `yaml:"resource"`
	Groups   []string `yaml:"groups"`
	Scopes   []string `yaml:"scopes"`
}

// WorkloadIssuer is a trusted issuer of workload JWTs (MCP Workload
// Identity Federation): Kubernetes service-account tokens, CI OIDC tokens,
// SPIFFE JWT-SVIDs. Its workloads get tokens with the jwt-bearer grant
// and no client credentials.
type WorkloadIssuer struct {
	// Issuer is the JWTs' iss.
	Issuer string `yaml:"issuer"`
	// JWKSURI: its keys, https only; default: OpenID discovery at the
	// issuer (which must then be https).
	JWKSURI string `yaml:"jwks_uri"`
	// CAFile: PEM roots for its TLS certificate besides the system's
	// (in Kubernetes: the service-account ca.crt).
	CAFile string `yaml:"ca_file"`
	// Audience the JWTs must carry; default this server's token endpoint.
	Audience string `yaml:"audience"`
	// MaxLifetime bounds exp - iat. Default 1h.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// Subjects map workloads to scopes per resource. Required.
	Subjects []WorkloadRule `yaml:"subjects"`
}

// WorkloadRule: a workload whose sub matches Subject (exact, or "*" for
// one segment between ':' or '/') and whose Claims all equal the given
// strings may get Scopes of Resource.
type WorkloadRule struct {
	Subject  string            `yaml:"subject"`
	Claims   map[string]string `yaml:"claims"`
	Resource string            `yaml:"resource"`
	Scopes   []string          `yaml:"scopes"`
}

// enterprise checks trusted_idps, trusted_workload_issuers and the
// private_key_jwt keys of the configured clients.
func (v *validator) enterprise(b *Builtin, resources []string) {
	for i, c := range b.Clients {
		key := fmt.Sprintf("builtin.clients[%d]", i)
		if c.JWKSFile != "" && c.JWKSURI != "" {
			v.add(key, "set jwks_file or jwks_uri, not both")
		}
		if (c.JWKSFile != "" || c.JWKSURI != "") && (c.SecretEnv != "" || c.SecretFile != "") {
			v.add(key, "a client authenticates with a secret or with private_key_jwt keys (jwks_file/jwks_uri), not both")
		}
		if c.JWKSURI != "" {
			v.httpsURL(key+".jwks_uri", c.JWKSURI)
		}
	}
	seen := map[string]bool{}
	for i := range b.TrustedIdPs {
		p := &b.TrustedIdPs[i]
		key := fmt.Sprintf("builtin.trusted_idps[%d]", i)
		v.trustedIssuerURLs(key, p.Issuer, p.JWKSURI, false)
		if seen[p.Issuer] {
			v.add(key+".issuer", "%q is listed twice", p.Issuer)
		}
		seen[p.Issuer] = true
		if len(p.ClientIDs) == 0 {
			v.add(key+".client_ids", "list the clients that may present this IdP's ID-JAGs")
		}
		if len(p.Scopes) == 0 {
			v.add(key+".scopes", "list the scopes its users may get (scope mapping); without a rule nobody gets a token")
		}
		for j, r := range p.Scopes {
			v.scopeRule(fmt.Sprintf("%s.scopes[%d]", key, j), r.Resource, r.Scopes, resources, true)
		}
		for j, d := range p.EmailDomains {
			if d == "" || strings.ContainsAny(d, "@ ") {
				v.add(fmt.Sprintf("%s.email_domains[%d]", key, j), "%q: a bare domain such as example.com", d)
			}
		}
		v.lifetime(key+".max_lifetime", p.MaxLifetime)
	}
	seen = map[string]bool{}
	for i := range b.TrustedWorkloadIssuers {
		w := &b.TrustedWorkloadIssuers[i]
		key := fmt.Sprintf("builtin.trusted_workload_issuers[%d]", i)
		v.trustedIssuerURLs(key, w.Issuer, w.JWKSURI, true)
		if seen[w.Issuer] {
			v.add(key+".issuer", "%q is listed twice", w.Issuer)
		}
		seen[w.Issuer] = true
		if len(w.Subjects) == 0 {
			v.add(key+".subjects", "list the workloads (subject patterns) and the scopes they may get")
		}
		for j, r := range w.Subjects {
			k := fmt.Sprintf("%s.subjects[%d]", key, j)
			if r.Subject == "" || r.Subject == "*" {
				v.add(k+".subject", "name a workload subject (a pattern may use * for one segment, not for the whole subject)")
			}
			v.scopeRule(k, r.Resource, r.Scopes, resources, false)
		}
		v.lifetime(key+".max_lifetime", w.MaxLifetime)
	}
}

// trustedIssuerURLs: the issuer is an absolute URL; keys come over TLS
// (workload issuers: always; IdPs: https or loopback http for tests).
func (v *validator) trustedIssuerURLs(key, issuer, jwksURI string, tlsOnly bool) {
	if issuer == "" {
		v.add(key+".issuer", "required")
		return
	}
	check := v.secureURL
	if tlsOnly {
		check = v.httpsURL
	}
	switch {
	case jwksURI != "":
		check(key+".jwks_uri", jwksURI)
	case tlsOnly && !strings.HasPrefix(issuer, "https://"):
		v.add(key+".jwks_uri", "required: the issuer %q is no https URL to discover keys at (keys are fetched over TLS only)", issuer)
	case !tlsOnly:
		check(key+".issuer", issuer)
	}
}

func (v *validator) httpsURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		v.add(key, "%q must be an https URL", s)
	}
}

func (v *validator) scopeRule(key, resource string, scopes, resources []string, anyResource bool) {
	if resource == "" && !anyResource {
		v.add(key+".resource", "required: the resource (an upstream's resource) these scopes are for")
	}
	if resource != "" && !slices.Contains(resources, resource) {
		v.add(key+".resource", "%q is not the resource of any upstream", resource)
	}
	if len(scopes) == 0 {
		v.add(key+".scopes", "list the scopes granted")
	}
}

func (v *validator) lifetime(key string, d Duration) {
	if d.Duration < 0 || d.Duration > 24*time.Hour {
		v.add(key, "%s: between 0 (default) and 24h", d.Duration)
	}
}

// upstreamResources are the resource identifiers of the upstreams (after
// defaults), the audiences the built-in server issues tokens for.
func upstreamResources(g *Gateway) []string {
	var out []string
	for _, u := range g.Upstreams {
		out = append(out, u.Resource)
	}
	return out
}
