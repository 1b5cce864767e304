//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIssuer stands in for Kubernetes' service-account issuer or an
// enterprise IdP: its OpenID configuration and JWKS are served over TLS
// with a test CA (httptest's), whose certificate the gateway gets as
// ca_file.
type testIssuer struct {
	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	caFile string
}

func startTestIssuer(t *testing.T, dir string) *testIssuer {
	ti := &testIssuer{}
	ti.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/openid/v1/jwks"})
	})
	mux.HandleFunc("GET /openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ti.key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	ti.srv = httptest.NewTLSServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.caFile = filepath.Join(dir, fmt.Sprintf("ca-%d.pem", time.Now().UnixNano()))
	os.WriteFile(ti.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw}), 0o600)
	return ti
}

func (ti *testIssuer) sign(t *testing.T, typ string, claims map[string]any) string {
	return signES256(t, ti.key, "k1", typ, claims)
}

func signES256(t *testing.T, key *ecdsa.PrivateKey, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tokenRequest(t *testing.T, endpoint string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

var jtiN int

func jti() string { jtiN++; return fmt.Sprintf("jti-%d-%d", time.Now().UnixNano(), jtiN) }

// enterpriseGateway runs mcpgate serve with the built-in authorization
// server, two upstreams (/a/mcp, /b/mcp), a trusted IdP and a trusted
// workload issuer (both test issuers over TLS with their CA files), and
// client "agent" that authenticates with private_key_jwt (jwks_file).
func enterpriseGateway(t *testing.T) (gw *Gateway, idp, k8s *testIssuer, agentKey *ecdsa.PrivateKey) {
	dir := t.TempDir()
	idp, k8s = startTestIssuer(t, dir), startTestIssuer(t, dir)
	agentKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: agentKey.Public(), KeyID: "agent-1", Algorithm: "ES256"}}})
	jwksFile := filepath.Join(dir, "agent.jwks")
	os.WriteFile(jwksFile, jwks, 0o600)
	port := FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%[1]d
authorization_server: builtin
builtin:
  store: %[2]s
  clients:
    - id: agent
      jwks_file: %[3]s
  trusted_idps:
    - issuer: %[4]s
      ca_file: %[5]s
      client_ids: [agent]
      email_domains: [example.com]
      scopes:
        - resource: %[8]s/a/mcp
          scopes: [mcp:read]
        - resource: %[8]s/b/mcp
          scopes: [mcp:read]
  trusted_workload_issuers:
    - issuer: %[6]s
      ca_file: %[7]s
      subjects:
        - subject: "system:serviceaccount:agents:*"
          resource: %[8]s/a/mcp
          scopes: [mcp:read]
upstreams:
  - path: /a/mcp
    url: %[9]s
    scopes_supported: [mcp:read]
  - path: /b/mcp
    url: %[10]s
    scopes_supported: [mcp:read]
`, port, filepath.Join(dir, "as.db"), jwksFile, idp.srv.URL, idp.caFile, k8s.srv.URL, k8s.caFile, base,
		startEverythingHTTP(t, "streamableHttp"), startEverythingHTTP(t, "streamableHttp"))
	file := filepath.Join(dir, "gw.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-enterprise", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, regexp.MustCompile(`mcpgate serving`))
	gw = &Gateway{URL: base, Proc: p}
	gw.WaitReady(t)
	return gw, idp, k8s, agentKey
}

// TestWorkloadIdentityFederationE2E: a JWT minted by the stand-in for
// Kubernetes (keys over TLS with a test CA) gets a token for an allowed
// service account with no client credentials, and the token works at its
// upstream only; another service account, a wrong aud and a replay are
// refused.
func TestWorkloadIdentityFederationE2E(t *testing.T) {
	gw, _, k8s, _ := enterpriseGateway(t)
	now := time.Now()
	claims := func(sub string, aud any) map[string]any {
		return map[string]any{"iss": k8s.srv.URL, "sub": sub, "aud": aud, "jti": jti(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	}
	grant := func(assertion, resource string) (int, map[string]any) {
		return tokenRequest(t, gw.Endpoint("/token"), url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}, "resource": {resource}})
	}
	sa := k8s.sign(t, "JWT", claims("system:serviceaccount:agents:router", []string{gw.Endpoint("/token")}))
	status, tok := grant(sa, gw.Endpoint("/a/mcp"))
	if status != 200 || tok["access_token"] == nil {
		t.Fatalf("allowed service account: %d %v", status, tok)
	}
	if st, _, body := post(t, gw.Endpoint("/a/mcp"), "Bearer "+tok["access_token"].(string), initialize); st != 200 {
		t.Fatalf("workload token at its upstream: %d %s", st, body)
	}
	if st, _, body := post(t, gw.Endpoint("/b/mcp"), "Bearer "+tok["access_token"].(string), initialize); st != 401 {
		t.Fatalf("workload token at another upstream: %d %s", st, body)
	}
	// The audit log names the grant, the profile and the workload issuer.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(gw.Proc.Output(), `"grant_profile":"workload-identity-federation","grant_issuer":"`+k8s.srv.URL+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no audit record with the WIF grant in:\n%s", gw.Proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, c := range map[string]struct {
		assertion, resource, code string
	}{
		"replay":                      {sa, gw.Endpoint("/a/mcp"), "invalid_grant"},
		"other service account":       {k8s.sign(t, "JWT", claims("system:serviceaccount:default:router", []string{gw.Endpoint("/token")})), gw.Endpoint("/a/mcp"), "invalid_grant"},
		"wrong aud":                   {k8s.sign(t, "JWT", claims("system:serviceaccount:agents:router", []string{"https://kubernetes.default.svc"})), gw.Endpoint("/a/mcp"), "invalid_grant"},
		"resource it has no rule for": {k8s.sign(t, "JWT", claims("system:serviceaccount:agents:router", []string{gw.Endpoint("/token")})), gw.Endpoint("/b/mcp"), "invalid_grant"},
	} {
		if st, m := grant(c.assertion, c.resource); st != 400 || m["error"] != c.code || m["error_description"] == nil || m["access_token"] != nil {
			t.Errorf("%s: %d %v, want 400 %s with a description", name, st, m, c.code)
		}
	}
}

// TestEnterpriseManagedAuthorizationE2E: client agent authenticates with
// private_key_jwt and presents ID-JAGs of the trusted IdP: it reaches two
// upstreams with no consent page; a replayed ID-JAG, one for another
// audience, for another client_id, an expired one and one from an
// untrusted issuer are refused. The metadata advertises the profile.
func TestEnterpriseManagedAuthorizationE2E(t *testing.T) {
	gw, idp, _, agentKey := enterpriseGateway(t)
	stranger := startTestIssuer(t, t.TempDir())
	resp, err := http.Get(gw.Endpoint("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if !strings.Contains(fmt.Sprint(md["authorization_grant_profiles_supported"]), "urn:ietf:params:oauth:grant-profile:id-jag") ||
		!strings.Contains(fmt.Sprint(md["grant_types_supported"]), "jwt-bearer") || !strings.Contains(fmt.Sprint(md["token_endpoint_auth_methods_supported"]), "private_key_jwt") {
		t.Fatalf("metadata: %v", md)
	}
	now := time.Now()
	jagClaims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": idp.srv.URL, "sub": "00u-alice", "aud": gw.URL, "client_id": "agent", "jti": jti(),
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": gw.Endpoint("/a/mcp"), "scope": "mcp:read", "email": "alice@example.com"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	grant := func(assertion string) (int, map[string]any) {
		ca := signES256(t, agentKey, "agent-1", "", map[string]any{"iss": "agent", "sub": "agent", "aud": gw.URL, "jti": jti(),
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
		return tokenRequest(t, gw.Endpoint("/token"), url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {ca}})
	}
	first := idp.sign(t, "oauth-id-jag+jwt", jagClaims(nil))
	for _, path := range []string{"/a/mcp", "/b/mcp"} {
		a := first
		if path == "/b/mcp" {
			a = idp.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) { c["resource"] = gw.Endpoint(path) }))
		}
		st, tok := grant(a)
		if st != 200 || tok["access_token"] == nil || tok["refresh_token"] != nil {
			t.Fatalf("ID-JAG for %s: %d %v", path, st, tok)
		}
		if st, _, body := post(t, gw.Endpoint(path), "Bearer "+tok["access_token"].(string), initialize); st != 200 {
			t.Fatalf("ID-JAG token at %s: %d %s", path, st, body)
		}
	}
	for name, a := range map[string]string{
		"replayed":        first,
		"other audience":  idp.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) { c["aud"] = "https://other-as.example" })),
		"other client_id": idp.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) { c["client_id"] = "someone-else" })),
		"expired": idp.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) {
			c["iat"] = now.Add(-10 * time.Minute).Unix()
			c["exp"] = now.Add(-5 * time.Minute).Unix()
		})),
		"untrusted issuer":   stranger.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) { c["iss"] = stranger.srv.URL })),
		"other email domain": idp.sign(t, "oauth-id-jag+jwt", jagClaims(func(c map[string]any) { c["email"] = "bob@evil.example" })),
	} {
		if st, m := grant(a); st != 400 || m["error"] != "invalid_grant" || m["error_description"] == nil || m["access_token"] != nil {
			t.Errorf("%s ID-JAG: %d %v, want 400 invalid_grant with a description", name, st, m)
		}
	}
}
