package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const otherResource = "https://gw.example/other"

type jagFixture struct {
	*fixture
	idp *testIssuer
}

// newJAGFixture: one trusted IdP (users of example.com in group eng get
// mcp:read; admins also mcp:admin), clients app and other (secrets),
// public (no secret), all listed; outsider (secret) not listed.
func newJAGFixture(t *testing.T, mutate func(*Config)) *jagFixture {
	idp := newTestIssuer(t)
	f := newFixture(t, func(c *Config) {
		c.Resources = append(c.Resources, Resource{ID: otherResource, Scopes: []string{"mcp:read"}})
		c.Clients = append(c.Clients, StaticClient{ID: "app", Secret: "app-secret"}, StaticClient{ID: "other", Secret: "other-secret"},
			StaticClient{ID: "public"}, StaticClient{ID: "outsider", Secret: "outsider-secret"})
		c.TrustedIdPs = []TrustedIdP{{Issuer: idp.srv.URL, Fetch: idp.fetch(), ClientIDs: []string{"app", "other", "public"},
			EmailDomains: []string{"example.com"}, Groups: []string{"eng", "admins"},
			Scopes: []ScopeRule{{Resource: resourceID, Scopes: []string{"mcp:read"}}, {Groups: []string{"admins"}, Scopes: []string{"mcp:admin"}}}}}
		if mutate != nil {
			mutate(c)
		}
	})
	return &jagFixture{fixture: f, idp: idp}
}

// claims is a valid ID-JAG for client app, user alice of group eng.
func (f *jagFixture) claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": f.idp.srv.URL, "sub": "00u-alice", "aud": f.srv.URL, "client_id": "app", "jti": randomID(12),
		"iat": unix(f.now), "exp": unix(f.now.Add(5 * time.Minute)), "resource": resourceID, "scope": "mcp:read",
		"email": "alice@example.com", "groups": []string{"eng"}}
	if mod != nil {
		mod(c)
	}
	return c
}

func (f *jagFixture) jag(t *testing.T, mod func(map[string]any)) string {
	return f.idp.sign(t, typIDJAG, f.claims(mod))
}

func (f *jagFixture) present(assertion string, extra url.Values, id, secret string) (resp *httpResponse, body string) {
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	r, b := f.postForm("/token", form, basic(id, secret))
	return r, b
}

func TestIDJAGIssuesAudienceRestrictedToken(t *testing.T) {
	f := newJAGFixture(t, nil)
	resp, body := f.present(f.jag(t, nil), nil, "app", "app-secret")
	tok := tokenOf(t, "valid ID-JAG", resp, body)
	if tok["refresh_token"] != nil || tok["scope"] != "mcp:read" {
		t.Fatalf("answer %v: want scope mcp:read and no refresh token (the ID-JAG replaces it)", tok)
	}
	cl, ok := f.as.parseAccess(tok["access_token"].(string))
	if !ok || cl.Subject != "00u-alice" || cl.ClientID != "app" || len(cl.Audience) != 1 || cl.Audience[0] != resourceID {
		t.Fatalf("access token claims %+v: want sub 00u-alice, client_id app, aud %s only", cl, resourceID)
	}
	if cl.Grant == nil || cl.Grant.Profile != profileIDJAG || cl.Grant.Issuer != f.idp.srv.URL {
		t.Fatalf("mcpgate_grant claim %+v: want the id-jag profile and the IdP", cl.Grant)
	}
	// An admin may get mcp:admin; the request may narrow.
	resp, body = f.present(f.jag(t, func(c map[string]any) { c["groups"] = []string{"admins"}; c["scope"] = "mcp:read mcp:admin" }),
		url.Values{"scope": {"mcp:admin"}}, "app", "app-secret")
	if tok := tokenOf(t, "admin", resp, body); tok["scope"] != "mcp:admin" {
		t.Fatalf("admin narrowed to mcp:admin: got %v", tok["scope"])
	}
}

func TestIDJAGMetadata(t *testing.T) {
	f := newJAGFixture(t, nil)
	resp, err := f.http.Get(f.srv.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	decodeJSON(t, resp, &m)
	has := func(k, v string) bool {
		arr, _ := m[k].([]any)
		return slices.Contains(arr, any(v))
	}
	if !has("grant_types_supported", grantJWTBearer) || !has("authorization_grant_profiles_supported", profileIDJAG) ||
		!has("token_endpoint_auth_methods_supported", "private_key_jwt") || has("token_endpoint_auth_signing_alg_values_supported", "none") ||
		!has("token_endpoint_auth_signing_alg_values_supported", "ES256") || has("token_endpoint_auth_signing_alg_values_supported", "HS256") {
		t.Fatalf("metadata lacks the jwt-bearer grant, the id-jag profile or private_key_jwt: %v", m)
	}
	plain := newFixture(t, nil)
	resp, _ = plain.http.Get(plain.srv.URL + "/.well-known/oauth-authorization-server")
	m = nil
	decodeJSON(t, resp, &m)
	if has("grant_types_supported", grantJWTBearer) || m["authorization_grant_profiles_supported"] != nil {
		t.Fatalf("a server without trusted issuers advertises the jwt-bearer grant: %v", m)
	}
}

// TestIDJAGRefusals: every rule of Enterprise-Managed Authorization §5.1
// and the ID-JAG draft §4.4.1, each refused with an RFC 6749 error and
// no token.
func TestIDJAGRefusals(t *testing.T) {
	f := newJAGFixture(t, nil)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	untrusted := newTestIssuer(t)
	pub, _ := x509.MarshalPKIXPublicKey(f.idp.key.Public())
	cases := []struct {
		name, assertion string
		extra           url.Values
		id, secret      string
		status          int
		code            string
	}{
		{"other audience", f.jag(t, func(c map[string]any) { c["aud"] = "https://other-as.example" }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"audience array with a second value", f.jag(t, func(c map[string]any) { c["aud"] = []string{f.srv.URL, "https://other-as.example"} }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"aud is the resource, not the issuer", f.jag(t, func(c map[string]any) { c["aud"] = resourceID }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"client_id of another client", f.jag(t, func(c map[string]any) { c["client_id"] = "other" }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no client_id claim", f.jag(t, func(c map[string]any) { delete(c, "client_id") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"client not allowed for this IdP", f.jag(t, func(c map[string]any) { c["client_id"] = "outsider" }), nil, "outsider", "outsider-secret", 400, "unauthorized_client"},
		{"public client", f.jag(t, func(c map[string]any) { c["client_id"] = "public" }), nil, "public", "", 400, "unauthorized_client"},
		{"wrong client secret", f.jag(t, nil), nil, "app", "nope", 401, "invalid_client"},
		{"expired", f.jag(t, func(c map[string]any) {
			c["iat"] = unix(f.now.Add(-10 * time.Minute))
			c["exp"] = unix(f.now.Add(-2 * time.Minute))
		}), nil, "app", "app-secret", 400, "invalid_grant"},
		{"lives too long", f.jag(t, func(c map[string]any) { c["exp"] = unix(f.now.Add(2 * time.Hour)) }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"issued in the future", f.jag(t, func(c map[string]any) {
			c["iat"] = unix(f.now.Add(10 * time.Minute))
			c["exp"] = unix(f.now.Add(12 * time.Minute))
		}), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no exp", f.jag(t, func(c map[string]any) { delete(c, "exp") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no jti", f.jag(t, func(c map[string]any) { delete(c, "jti") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no sub", f.jag(t, func(c map[string]any) { delete(c, "sub") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"untrusted issuer", untrusted.sign(t, typIDJAG, f.claims(func(c map[string]any) { c["iss"] = untrusted.srv.URL })), nil, "app", "app-secret", 400, "invalid_grant"},
		{"trusted iss, attacker's key", signJWT(t, attacker, jose.ES256, "k1", typIDJAG, f.claims(nil)), nil, "app", "app-secret", 400, "invalid_grant"},
		{"wrong typ (JWT)", f.idp.sign(t, "JWT", f.claims(nil)), nil, "app", "app-secret", 400, "invalid_grant"},
		{"typ missing", f.idp.sign(t, "", f.claims(nil)), nil, "app", "app-secret", 400, "invalid_grant"},
		{"alg none", unsignedJWT(typIDJAG, f.claims(nil)), nil, "app", "app-secret", 400, "invalid_grant"},
		{"HS256 keyed with the IdP's public key", hmacJWT(t, pub, typIDJAG, f.claims(nil)), nil, "app", "app-secret", 400, "invalid_grant"},
		{"scope escalation in the ID-JAG", f.jag(t, func(c map[string]any) { c["scope"] = "mcp:read mcp:admin" }), nil, "app", "app-secret", 400, "invalid_scope"},
		{"scope escalation in the request", f.jag(t, nil), url.Values{"scope": {"mcp:admin"}}, "app", "app-secret", 400, "invalid_scope"},
		{"scope of another resource", f.jag(t, func(c map[string]any) { c["scope"] = "chat.read" }), nil, "app", "app-secret", 400, "invalid_scope"},
		{"unknown resource", f.jag(t, func(c map[string]any) { c["resource"] = "https://evil.example/mcp" }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no resource", f.jag(t, func(c map[string]any) { delete(c, "resource") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"request resource not in the ID-JAG", f.jag(t, nil), url.Values{"resource": {otherResource}}, "app", "app-secret", 400, "invalid_target"},
		{"email of another domain", f.jag(t, func(c map[string]any) { c["email"] = "mallory@example.com.evil.test" }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no email", f.jag(t, func(c map[string]any) { delete(c, "email") }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"no admitted group", f.jag(t, func(c map[string]any) { c["groups"] = []string{"sales"} }), nil, "app", "app-secret", 400, "invalid_grant"},
		{"two assertions", f.jag(t, nil), url.Values{"assertion": {f.jag(t, nil), f.jag(t, nil)}}, "app", "app-secret", 400, "invalid_request"},
		{"garbage", "not-a-jwt", nil, "app", "app-secret", 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.present(tc.assertion, tc.extra, tc.id, tc.secret)
			wantError(t, tc.name, resp, body, tc.status, tc.code)
		})
	}
}

func TestIDJAGSingleUse(t *testing.T) {
	f := newJAGFixture(t, nil)
	a := f.jag(t, nil)
	resp, body := f.present(a, nil, "app", "app-secret")
	tokenOf(t, "first use", resp, body)
	resp, body = f.present(a, nil, "app", "app-secret")
	wantError(t, "replay", resp, body, 400, "invalid_grant")
	if !strings.Contains(body, "already used") {
		t.Fatalf("replay answer %s does not say the ID-JAG was used", body)
	}
}

// TestIDJAGEmbeddedKeyRefused: a jwk/jku/x5c header naming the signer's
// own key is never trusted.
func TestIDJAGEmbeddedKeyRefused(t *testing.T) {
	f := newJAGFixture(t, nil)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: attacker},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(typIDJAG))
	raw, _ := joseSerialize(s, f.claims(nil))
	resp, body := f.present(raw, nil, "app", "app-secret")
	wantError(t, "embedded jwk", resp, body, 400, "invalid_grant")
}

// TestIssuerKeyFetchBudget: unknown kids do not make one key set fetch
// per request.
func TestIssuerKeyFetchBudget(t *testing.T) {
	f := newJAGFixture(t, nil)
	for i := 0; i < 20; i++ {
		a := signJWT(t, f.idp.key, jose.ES256, "unknown-"+randomID(4), typIDJAG, f.claims(nil))
		resp, body := f.present(a, nil, "app", "app-secret")
		wantError(t, "unknown kid", resp, body, 400, "invalid_grant")
	}
	if n := f.idp.fetches.Load(); n != 1 {
		t.Fatalf("20 requests with unknown kids fetched the key set %d times; want 1 within %s", n, keySetMinRefresh)
	}
	f.now = f.now.Add(keySetMinRefresh + time.Second)
	resp, body := f.present(f.jag(t, nil), nil, "app", "app-secret")
	tokenOf(t, "known kid after the budget window", resp, body)
}

// TestClientJWKSURICannotPoisonIssuerKeys: a metadata-document client
// whose jwks_uri is the IdP's key set URL (fetched, for clients, with the
// SSRF-safe fetcher, which fails on loopback) does not make the IdP's
// keys unavailable.
func TestClientJWKSURICannotPoisonIssuerKeys(t *testing.T) {
	var f *jagFixture
	f = newJAGFixture(t, func(c *Config) {
		c.FetchClientMetadata = func(_ context.Context, u string) ([]byte, error) {
			if u == "https://client.example/app.json" {
				return json.Marshal(map[string]any{"client_id": u, "redirect_uris": []string{"https://client.example/cb"},
					"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": f.idp.srv.URL + "/jwks"})
			}
			return nil, errors.New("refusing to fetch from 127.0.0.1: not a public address")
		}
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pf := &pkjFixture{fixture: f.fixture, key: key}
	if _, err := f.as.authenticateAssertion(mustFormKID(t, f.fixture, pf, "https://client.example/app.json", "k1")); err == nil {
		t.Fatal("a client assertion verified against keys its fetcher could not read")
	}
	resp, body := f.present(f.jag(t, nil), nil, "app", "app-secret")
	tokenOf(t, "ID-JAG after the client's failed fetch of the same URL", resp, body)
}

// TestIssuerDiscoveryFailureBudget: while the IdP's discovery document
// fails, requests naming it do not each fetch it again.
func TestIssuerDiscoveryFailureBudget(t *testing.T) {
	calls := 0
	f := newJAGFixture(t, func(c *Config) {
		c.TrustedIdPs[0].Fetch = func(context.Context, string) ([]byte, error) { calls++; return nil, errors.New("down") }
	})
	for i := 0; i < 10; i++ {
		resp, body := f.present(f.jag(t, nil), nil, "app", "app-secret")
		wantError(t, "IdP down", resp, body, 503, "temporarily_unavailable")
	}
	if calls != 1 {
		t.Fatalf("10 requests made %d discovery fetches; want 1 within %s", calls, keySetMinRefresh)
	}
}
