package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type wifFixture struct {
	*fixture
	k8s *testIssuer
}

const routerSA = "system:serviceaccount:agents:router"

// newWIFFixture: a Kubernetes-like issuer (JWKS over TLS with its own
// CA); service accounts of namespace agents get mcp:read, router also
// mcp:admin; a GitHub-like rule needs repository = acme/tools.
func newWIFFixture(t *testing.T, mutate func(*Config)) *wifFixture {
	k8s := newTestIssuer(t)
	f := newFixture(t, func(c *Config) {
		c.WorkloadIssuers = []WorkloadIssuer{{Issuer: k8s.srv.URL, Fetch: k8s.fetch(), Subjects: []WorkloadRule{
			{Subject: "system:serviceaccount:agents:*", Resource: resourceID, Scopes: []string{"mcp:read"}},
			{Subject: routerSA, Resource: resourceID, Scopes: []string{"mcp:admin"}},
			{Subject: "repo:acme/tools:ref:refs/heads/*", Claims: map[string]string{"repository": "acme/tools"}, Resource: resourceID, Scopes: []string{"mcp:read"}},
		}}}
		if mutate != nil {
			mutate(c)
		}
	})
	return &wifFixture{fixture: f, k8s: k8s}
}

func (f *wifFixture) claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": f.k8s.srv.URL, "sub": routerSA, "aud": []string{f.srv.URL + "/token", "https://kubernetes.default.svc"},
		"jti": randomID(12), "iat": unix(f.now), "exp": unix(f.now.Add(10 * time.Minute))}
	if mod != nil {
		mod(c)
	}
	return c
}

func (f *wifFixture) request(assertion string, extra url.Values) (*httpResponse, string) {
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}, "resource": {resourceID}}
	for k, v := range extra {
		form[k] = v
	}
	return f.postForm("/token", form, nil)
}

func TestWorkloadJWTIssuesToken(t *testing.T) {
	f := newWIFFixture(t, nil)
	resp, body := f.request(f.k8s.sign(t, "JWT", f.claims(nil)), nil)
	tok := tokenOf(t, "service account router", resp, body)
	cl, ok := f.as.parseAccess(tok["access_token"].(string))
	if !ok || cl.Subject != routerSA || cl.Audience[0] != resourceID || cl.Scope != "mcp:read mcp:admin" || tok["refresh_token"] != nil {
		t.Fatalf("token %v claims %+v: want sub %s, aud %s, scope mcp:read mcp:admin, no refresh token", tok, cl, routerSA, resourceID)
	}
	if cl.Grant == nil || cl.Grant.Type != grantJWTBearer || cl.Grant.Profile != profileWorkload || cl.Grant.Issuer != f.k8s.srv.URL {
		t.Fatalf("mcpgate_grant claim %+v: want the jwt-bearer grant, the WIF profile and the workload issuer", cl.Grant)
	}
	resp, body = f.request(f.k8s.sign(t, "", f.claims(func(c map[string]any) { c["sub"] = "system:serviceaccount:agents:helper" })), url.Values{"scope": {"mcp:read"}})
	if tok := tokenOf(t, "another service account of agents", resp, body); tok["scope"] != "mcp:read" {
		t.Fatalf("helper got scope %v, want mcp:read", tok["scope"])
	}
	gh := f.claims(func(c map[string]any) {
		c["sub"] = "repo:acme/tools:ref:refs/heads/main"
		c["repository"] = "acme/tools"
	})
	resp, body = f.request(f.k8s.sign(t, "JWT", gh), nil)
	tokenOf(t, "GitHub-style subject with claims", resp, body)
}

func TestWorkloadJWTRefusals(t *testing.T) {
	f := newWIFFixture(t, nil)
	untrusted := newTestIssuer(t)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sign := func(mod func(map[string]any)) string { return f.k8s.sign(t, "JWT", f.claims(mod)) }
	cases := []struct {
		name, assertion string
		extra           url.Values
		code            string
	}{
		{"service account of another namespace", sign(func(c map[string]any) { c["sub"] = "system:serviceaccount:default:router" }), nil, "invalid_grant"},
		{"pattern segment does not span ':'", sign(func(c map[string]any) { c["sub"] = "system:serviceaccount:agents:x:y" }), nil, "invalid_grant"},
		{"prefix trick", sign(func(c map[string]any) { c["sub"] = "system:serviceaccount:agents" }), nil, "invalid_grant"},
		{"claims rule not met", sign(func(c map[string]any) {
			c["sub"] = "repo:acme/tools:ref:refs/heads/main"
			c["repository"] = "evil/tools"
		}), nil, "invalid_grant"},
		{"claims rule claim missing", sign(func(c map[string]any) { c["sub"] = "repo:acme/tools:ref:refs/heads/main" }), nil, "invalid_grant"},
		{"wrong audience", sign(func(c map[string]any) { c["aud"] = "https://kubernetes.default.svc" }), nil, "invalid_grant"},
		{"issuer as audience", sign(func(c map[string]any) { c["aud"] = f.srv.URL }), nil, "invalid_grant"},
		{"expired", sign(func(c map[string]any) {
			c["iat"] = unix(f.now.Add(-20 * time.Minute))
			c["exp"] = unix(f.now.Add(-5 * time.Minute))
		}), nil, "invalid_grant"},
		{"lives too long", sign(func(c map[string]any) { c["exp"] = unix(f.now.Add(3 * time.Hour)) }), nil, "invalid_grant"},
		{"no jti", sign(func(c map[string]any) { delete(c, "jti") }), nil, "invalid_grant"},
		{"untrusted issuer", untrusted.sign(t, "JWT", f.claims(func(c map[string]any) { c["iss"] = untrusted.srv.URL })), nil, "invalid_grant"},
		{"trusted iss, attacker's key", signJWT(t, attacker, jose.ES256, "k1", "JWT", f.claims(nil)), nil, "invalid_grant"},
		{"alg none", unsignedJWT("JWT", f.claims(nil)), nil, "invalid_grant"},
		{"typ at+jwt (an access token)", f.k8s.sign(t, "at+jwt", f.claims(nil)), nil, "invalid_grant"},
		{"typ ID-JAG from a workload issuer", f.k8s.sign(t, typIDJAG, f.claims(nil)), nil, "invalid_grant"},
		{"scope escalation", sign(func(c map[string]any) { c["sub"] = "system:serviceaccount:agents:helper" }), url.Values{"scope": {"mcp:admin"}}, "invalid_scope"},
		{"unknown resource", sign(nil), url.Values{"resource": {"https://evil.example/mcp"}}, "invalid_target"},
		{"no resource", sign(nil), url.Values{"resource": {""}}, "invalid_target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.request(tc.assertion, tc.extra)
			wantError(t, tc.name, resp, body, 400, tc.code)
		})
	}
}

func TestWorkloadJWTSingleUse(t *testing.T) {
	f := newWIFFixture(t, nil)
	a := f.k8s.sign(t, "JWT", f.claims(nil))
	resp, body := f.request(a, nil)
	tokenOf(t, "first use", resp, body)
	resp, body = f.request(a, nil)
	wantError(t, "replay", resp, body, 400, "invalid_grant")
}

// TestWorkloadKeysTLSOnly: a workload issuer's keys are never read over
// plain http, even from loopback.
func TestWorkloadKeysTLSOnly(t *testing.T) {
	f := newWIFFixture(t, func(c *Config) {
		fetch, _ := issuerFetcher("", false)
		c.WorkloadIssuers[0].JWKSURI = "http://127.0.0.1:1/jwks"
		c.WorkloadIssuers[0].Fetch = fetch
	})
	resp, body := f.request(f.k8s.sign(t, "JWT", f.claims(nil)), nil)
	wantError(t, "http jwks_uri", resp, body, 503, "temporarily_unavailable")
	if _, err := New(Config{Issuer: "https://as.example", Store: NewMemoryStore(),
		WorkloadIssuers: []WorkloadIssuer{{Issuer: "http://k8s.local", Subjects: []WorkloadRule{{Subject: "a", Resource: resourceID, Scopes: []string{"x"}}}}}}); err == nil {
		t.Fatal("a workload issuer without https keys was accepted")
	}
}

func TestSubjectPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern, sub string
		want         bool
	}{
		{"system:serviceaccount:agents:router", "system:serviceaccount:agents:router", true},
		{"system:serviceaccount:agents:*", "system:serviceaccount:agents:router", true},
		{"system:serviceaccount:agents:*", "system:serviceaccount:agents:", false},
		{"system:serviceaccount:agents:*", "system:serviceaccount:agents:a:b", false},
		{"system:serviceaccount:*:router", "system:serviceaccount:prod:router", true},
		{"system:serviceaccount:*:router", "system:serviceaccount:prod:x:router", false},
		{"spiffe://example.org/ns/agents/sa/*", "spiffe://example.org/ns/agents/sa/router", true},
		{"spiffe://example.org/ns/agents/sa/*", "spiffe://example.org/ns/agents/sa/router/extra", false},
		{"spiffe://example.org/ns/agents/sa/*", "spiffe://example.org.evil/ns/agents/sa/router", false},
		{"spiffe://example.org/ns/agents/sa/router", "spiffe://example.org/ns/agents/sa/router2", false},
	} {
		if got := subjectMatches(tc.pattern, tc.sub); got != tc.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tc.pattern, tc.sub, got, tc.want)
		}
	}
}
