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
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type pkjFixture struct {
	*fixture
	key *ecdsa.PrivateKey
}

// newPKJFixture: client "pkj" (client credentials, mcp:read) authenticates
// with private_key_jwt and an inline JWKS.
func newPKJFixture(t *testing.T, mutate func(*Config)) *pkjFixture {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "c1", Algorithm: "ES256", Use: "sig"}}})
	f := newFixture(t, func(c *Config) {
		c.Clients = append(c.Clients, StaticClient{ID: "pkj", JWKS: set, GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}})
		if mutate != nil {
			mutate(c)
		}
	})
	return &pkjFixture{fixture: f, key: key}
}

func (f *pkjFixture) assertionClaims(id string, mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": id, "sub": id, "aud": f.srv.URL, "jti": randomID(12), "iat": unix(f.now), "exp": unix(f.now.Add(time.Minute))}
	if mod != nil {
		mod(c)
	}
	return c
}

func (f *pkjFixture) ccForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID},
		"client_assertion_type": {clientAssertionJWT}, "client_assertion": {assertion}}
}

func TestPrivateKeyJWTClientCredentials(t *testing.T) {
	f := newPKJFixture(t, nil)
	a := signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("pkj", nil))
	resp, body := f.postForm("/token", f.ccForm(a), nil)
	tokenOf(t, "private_key_jwt", resp, body)
	resp, body = f.postForm("/token", f.ccForm(a), nil)
	wantError(t, "replayed client assertion", resp, body, 401, "invalid_client")
	// The token endpoint URL is an accepted audience too (RFC 7523 §3).
	a = signJWT(t, f.key, jose.ES256, "c1", "", f.assertionClaims("pkj", func(c map[string]any) { c["aud"] = f.srv.URL + "/token" }))
	resp, body = f.postForm("/token", f.ccForm(a), nil)
	tokenOf(t, "aud = token endpoint", resp, body)
}

func TestPrivateKeyJWTRefusals(t *testing.T) {
	f := newPKJFixture(t, nil)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(f.key.Public())
	sign := func(mod func(map[string]any)) string {
		return signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("pkj", mod))
	}
	cases := []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"other audience", f.ccForm(sign(func(c map[string]any) { c["aud"] = "https://other-as.example" })), nil},
		{"audience array", f.ccForm(sign(func(c map[string]any) { c["aud"] = []string{f.srv.URL, "https://other-as.example"} })), nil},
		{"PAR endpoint audience", f.ccForm(sign(func(c map[string]any) { c["aud"] = f.srv.URL + "/par" })), nil},
		{"expired", f.ccForm(sign(func(c map[string]any) {
			c["iat"] = unix(f.now.Add(-5 * time.Minute))
			c["exp"] = unix(f.now.Add(-3 * time.Minute))
		})), nil},
		{"lives too long", f.ccForm(sign(func(c map[string]any) { c["exp"] = unix(f.now.Add(time.Hour)) })), nil},
		{"no jti", f.ccForm(sign(func(c map[string]any) { delete(c, "jti") })), nil},
		{"no exp", f.ccForm(sign(func(c map[string]any) { delete(c, "exp") })), nil},
		{"sub differs from iss", f.ccForm(sign(func(c map[string]any) { c["sub"] = "machine" })), nil},
		{"signed by another key", f.ccForm(signJWT(t, other, jose.ES256, "c1", "JWT", f.assertionClaims("pkj", nil))), nil},
		{"alg none", f.ccForm(unsignedJWT("JWT", f.assertionClaims("pkj", nil))), nil},
		{"HS256 keyed with the public key", f.ccForm(hmacJWT(t, pub, "JWT", f.assertionClaims("pkj", nil))), nil},
		{"assertion for a secret client", f.ccForm(signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("machine", nil))), nil},
		{"unknown client", f.ccForm(signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("nobody", nil))), nil},
		{"wrong assertion type", func() url.Values {
			v := f.ccForm(sign(nil))
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return v
		}(), nil},
		{"assertion and Basic", f.ccForm(sign(nil)), basic("machine", "machine-secret")},
		{"assertion and client_secret", func() url.Values { v := f.ccForm(sign(nil)); v.Set("client_secret", "x"); return v }(), nil},
		{"client_id differs from iss", func() url.Values { v := f.ccForm(sign(nil)); v.Set("client_id", "machine"); return v }(), nil},
		{"private_key_jwt client with a secret", url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}, "client_id": {"pkj"}, "client_secret": {"guess"}}, nil},
		{"private_key_jwt client with nothing", url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}, "client_id": {"pkj"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.postForm("/token", tc.form, tc.hdr)
			wantError(t, tc.name, resp, body, 401, "invalid_client")
		})
	}
}

// TestPrivateKeyJWTAtOtherEndpoints: revocation and introspection
// authenticate the same way (and PAR, through clientRequest).
func TestPrivateKeyJWTAtOtherEndpoints(t *testing.T) {
	f := newPKJFixture(t, nil)
	a := signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("pkj", nil))
	resp, body := f.postForm("/token", f.ccForm(a), nil)
	tok := tokenOf(t, "token", resp, body)
	b := signJWT(t, f.key, jose.ES256, "c1", "JWT", f.assertionClaims("pkj", nil))
	resp, body = f.postForm("/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_assertion_type": {clientAssertionJWT}, "client_assertion": {b}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("revoke with private_key_jwt: %d %s", resp.StatusCode, body)
	}
	if _, ok := f.as.parseAccess(tok["access_token"].(string)); ok {
		t.Fatal("the token revoked with a private_key_jwt-authenticated request is still active")
	}
	resp, body = f.postForm("/revoke", url.Values{"token": {"x"}, "client_assertion_type": {clientAssertionJWT}, "client_assertion": {b}}, nil)
	wantError(t, "revoke with a replayed assertion", resp, body, 401, "invalid_client")
}

// TestPrivateKeyJWTMetadataDocumentClient: a Client ID Metadata Document
// with token_endpoint_auth_method private_key_jwt and a jwks_uri; the key
// set is fetched with the metadata fetcher, once.
func TestPrivateKeyJWTMetadataDocumentClient(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const id = "https://client.example/app.json"
	var jwksFetches atomic.Int32
	f := newFixture(t, func(c *Config) {
		c.FetchClientMetadata = func(_ context.Context, u string) ([]byte, error) {
			switch u {
			case id:
				return json.Marshal(map[string]any{"client_id": id, "client_name": "App", "redirect_uris": []string{"https://client.example/cb"},
					"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://client.example/jwks"})
			case "https://client.example/jwks":
				jwksFetches.Add(1)
				return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "m1", Algorithm: "ES256"}}})
			}
			return nil, errors.New("not found")
		}
	})
	pf := &pkjFixture{fixture: f, key: key}
	c, err := f.as.authenticateAssertion(mustForm(t, f, pf, id))
	if err != nil || c.ID != id || c.public() {
		t.Fatalf("metadata document client with private_key_jwt: %v %+v", err, c)
	}
	if _, err := f.as.authenticateAssertion(mustForm(t, f, pf, id)); err != nil {
		t.Fatal(err)
	}
	if n := jwksFetches.Load(); n != 1 {
		t.Fatalf("the client's jwks_uri was fetched %d times for two assertions; want 1 (cached)", n)
	}
}

func TestCIMDAuthMethods(t *testing.T) {
	for _, tc := range []struct {
		method, uri string
		jwks        string
		ok          bool
	}{
		{"none", "", "", true},
		{"private_key_jwt", "https://c.example/jwks", "", true},
		{"private_key_jwt", "http://c.example/jwks", "", false},
		{"private_key_jwt", "", "", false},
		{"private_key_jwt", "https://c.example/jwks", `{"keys":[]}`, false},
		{"private_key_jwt", "", `{"keys":[]}`, false},
		{"client_secret_basic", "", "", false},
	} {
		_, err := cimdAuthMethod(tc.method, tc.uri, []byte(tc.jwks))
		if (err == nil) != tc.ok {
			t.Errorf("cimdAuthMethod(%q, %q, %q) = %v, want ok=%v", tc.method, tc.uri, tc.jwks, err, tc.ok)
		}
	}
}

func TestRegisteredPrivateKeyJWTClient(t *testing.T) {
	f := newFixture(t, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "r1", Algorithm: "ES256"}}})
	out := f.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":` + string(set) + `}`)
	if out["client_secret"] != nil || out["token_endpoint_auth_method"] != "private_key_jwt" {
		t.Fatalf("registration answer %v: a private_key_jwt client gets no secret", out)
	}
	pf := &pkjFixture{fixture: f, key: key}
	id := out["client_id"].(string)
	if c, err := f.as.authenticateAssertion(mustFormKID(t, f, pf, id, "r1")); err != nil || c.ID != id {
		t.Fatalf("registered private_key_jwt client: %v", err)
	}
}

func mustForm(t *testing.T, f *fixture, pf *pkjFixture, id string) *httpRequest {
	return mustFormKID(t, f, pf, id, "m1")
}

// TestPrivateKeyJWTAtPAR: a pushed authorization request authenticates
// with private_key_jwt; a replayed assertion there is refused.
func TestPrivateKeyJWTAtPAR(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "w1", Algorithm: "ES256"}}})
	f := newFixture(t, func(c *Config) {
		c.Clients = append(c.Clients, StaticClient{ID: "web", JWKS: set, RedirectURIs: []string{"https://web.example/cb"}})
	})
	pf := &pkjFixture{fixture: f, key: key}
	_, challenge := pkcePair()
	a := signJWT(t, key, jose.ES256, "w1", "JWT", pf.assertionClaims("web", nil))
	form := url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {"https://web.example/cb"}, "code_challenge": {challenge},
		"code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}, "client_assertion_type": {clientAssertionJWT}, "client_assertion": {a}}
	resp, body := f.postForm("/par", form, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("PAR with private_key_jwt: %d %s", resp.StatusCode, body)
	}
	resp, body = f.postForm("/par", form, nil)
	wantError(t, "PAR with a replayed assertion", resp, body, 401, "invalid_client")
}
