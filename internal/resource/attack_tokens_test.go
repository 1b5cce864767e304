package resource

// Issue 11 hole 2, resource-server side: only access tokens authenticate,
// and a DPoP-bound credential is never usable without its proof. Also the
// content_digest modes of the DPoP profile (issue 12 item 1).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// fakeIntrospection answers RFC 7662 with answers[token] (inactive when
// absent), like the built-in server or another authorization server.
func fakeIntrospection(t *testing.T, answers map[string]map[string]any) (*Verifier, *int) {
	t.Helper()
	calls := new(int)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "introspection_endpoint": srv.URL + "/introspect"})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		*calls++
		r.ParseForm()
		a, ok := answers[r.Form.Get("token")]
		if !ok {
			a = map[string]any{"active": false}
		}
		json.NewEncoder(w).Encode(a)
	})
	v, err := New(context.Background(), Options{Resource: endpoint, Endpoint: endpoint, Getenv: func(string) string { return "s" },
		Issuers: []config.Issuer{{Issuer: srv.URL, Introspection: &config.Introspection{ClientID: "gw", ClientSecretEnv: "X"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	waitReady(t, v)
	return v, calls
}

func TestAttackIntrospectionRefusesNonAccessTokens(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	exp := time.Now().Add(time.Hour).Unix()
	ans := func(kv ...any) map[string]any {
		m := map[string]any{"active": true, "sub": "carol", "aud": endpoint, "scope": "mcp:read", "exp": exp, "client_id": "c"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	answers := map[string]map[string]any{
		"at-bearer":     ans("token_type", "Bearer"),
		"at-untyped":    ans(),
		"at-urn":        ans("token_type", "urn:ietf:params:oauth:token-type:access_token"),
		"at-dpop":       ans("token_type", "DPoP", "cnf", map[string]any{"jkt": jkt}),
		"at-token-use":  ans("token_use", "access"),
		"builtin-rt":    ans("token_type", "refresh_token"), // what the built-in server answers for a refresh token
		"keycloak-rt":   ans("token_type", "Refresh"),
		"urn-rt":        ans("token_type", "urn:ietf:params:oauth:token-type:refresh_token"),
		"id-token":      ans("token_type", "id_token"),
		"unknown-type":  ans("token_type", "N_A"),
		"numeric-type":  ans("token_type", 1),
		"token-use-rt":  ans("token_use", "refresh"),
		"token-use-id":  ans("token_use", "id"),
		"dpop-no-cnf":   ans("token_type", "DPoP"),
		"cnf-not-obj":   ans("cnf", "jkt"),
		"cnf-jkt-num":   ans("cnf", map[string]any{"jkt": 5}),
		"cnf-jkt-empty": ans("cnf", map[string]any{"jkt": ""}),
		"cnf-empty":     ans("cnf", map[string]any{}),
		"cnf-mtls":      ans("cnf", map[string]any{"x5t#S256": "abc"}),
		"bound-rt":      ans("token_type", "refresh_token", "cnf", map[string]any{"jkt": jkt}),
	}
	v, calls := fakeIntrospection(t, answers)
	for _, ok := range []string{"at-bearer", "at-untyped", "at-urn", "at-token-use"} {
		if _, err := v.Authenticate(req("Bearer "+ok), nil); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"builtin-rt", "keycloak-rt", "urn-rt", "id-token", "unknown-type", "numeric-type", "token-use-rt",
		"token-use-id", "dpop-no-cnf", "cnf-not-obj", "cnf-jkt-num", "cnf-jkt-empty", "cnf-empty", "cnf-mtls", "bound-rt", "at-dpop"} {
		for _, scheme := range []string{"Bearer ", "DPoP "} {
			if p, err := v.Authenticate(req(scheme+bad), nil); err == nil {
				t.Errorf("%s%s accepted as %s", scheme, bad, p.Subject)
			}
		}
	}
	// Refused again from the negative cache, never cached as a principal.
	before := *calls
	if _, err := v.Authenticate(req("Bearer builtin-rt"), nil); err == nil {
		t.Fatal("refresh token accepted on the second try")
	}
	if *calls != before {
		t.Errorf("a refused token was introspected again at once (%d calls)", *calls-before)
	}
}

func TestDPoPBoundIntrospectedTokenNeedsItsProof(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	v, _ := fakeIntrospection(t, map[string]map[string]any{
		"at": {"active": true, "sub": "carol", "aud": endpoint, "exp": time.Now().Add(time.Hour).Unix(), "token_type": "DPoP", "cnf": map[string]any{"jkt": jkt}},
	})
	if _, err := v.Authenticate(req("Bearer at"), nil); err == nil {
		t.Fatal("DPoP-bound token accepted as a bearer token")
	}
	if _, err := v.Authenticate(req("DPoP at"), nil); err == nil {
		t.Fatal("DPoP-bound token accepted without a proof")
	}
	pf, _ := dpop.NewProof(key, "ES256", "POST", endpoint, dpop.ProofOptions{AccessToken: "at"})
	r := req("DPoP at")
	r.Header.Set("DPoP", pf)
	if _, err := v.Authenticate(r, nil); err != nil {
		t.Fatalf("with its proof: %v", err)
	}
}

func TestAttackJWTTypeMustBeAccessToken(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, nil)
	rsa := jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: idp.RSA, KeyID: "rsa1"}}
	sign := func(typ string, c map[string]any) string {
		if typ == "-" {
			s, _ := jose.NewSigner(rsa, nil)
			b, _ := json.Marshal(c)
			jws, _ := s.Sign(b)
			out, _ := jws.CompactSerialize()
			return out
		}
		return testutil.SignWith(t, rsa, c, typ)
	}
	claims := func() map[string]any { return idp.Claims("alice", endpoint, "mcp:read") }
	for _, typ := range []string{"at+jwt", "application/at+jwt", "AT+JWT", "JWT", "jwt", "-"} {
		if _, err := v.Authenticate(req("Bearer "+sign(typ, claims())), nil); err != nil {
			t.Errorf("typ %s refused: %v", typ, err)
		}
	}
	// RFC 8725 §3.11: explicitly typed JWTs of other kinds are no access
	// tokens, even signed by a trusted issuer for this audience.
	for _, typ := range []string{"logout+jwt", "secevent+jwt", "id_token+jwt", "oauth-id-jag+jwt", "token-introspection+jwt",
		"oauth-authz-req+jwt", "dpop+jwt", "client-authentication+jwt", "vc+sd-jwt", "kb+jwt", "txntoken+jwt", "at+jwt ", "at+jwt\x00"} {
		if _, err := v.Authenticate(req("Bearer "+sign(typ, claims())), nil); err == nil {
			t.Errorf("typ %q accepted as an access token", typ)
		}
	}
	// A bound JWT with a cnf it cannot enforce.
	for name, cnf := range map[string]any{"string": "x", "jkt number": map[string]any{"jkt": 1}, "empty": map[string]any{},
		"mtls": map[string]any{"x5t#S256": "abc"}, "jwk": map[string]any{"jwk": map[string]any{"kty": "EC"}}} {
		c := claims()
		c["cnf"] = cnf
		if _, err := v.Authenticate(req("Bearer "+sign("at+jwt", c)), nil); err == nil {
			t.Errorf("cnf %s accepted as a bearer token", name)
		}
	}
}

// TestAttackJWSJSONSerializationRefused: a JWT is a JWS in the compact
// serialization (RFC 7519 §1); the same signature in the JSON serialization
// (RFC 7515 §7.2) is not an access token.
func TestAttackJWSJSONSerializationRefused(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, nil)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: idp.RSA, KeyID: "rsa1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(idp.Claims("alice", endpoint, "mcp:read"))
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	compact, _ := jws.CompactSerialize()
	if _, err := v.Authenticate(req("Bearer "+compact), nil); err != nil {
		t.Fatalf("compact serialization refused: %v", err)
	}
	if _, err := v.Authenticate(req("Bearer "+jws.FullSerialize()), nil); err == nil {
		t.Fatal("a JWS in the JSON serialization was accepted as an access token")
	}
}
