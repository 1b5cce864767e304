//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// headerRT adds a fixed header to every request (a client forging the
// assertion header) besides the bearer token.
type headerRT struct {
	auth, name, value string
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", h.auth)
	if h.name != "" {
		r.Header.Set(h.name, h.value)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// whoami calls the verifier's whoami tool through the gateway and returns
// the claims it verified and the assertion it got.
func whoami(t *testing.T, endpoint string, rt http.RoundTripper) (map[string]any, string, error) {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "e2e", Version: "1"}, nil)
	cs, err := c.Connect(Ctx(t, 30*time.Second), &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}, nil)
	if err != nil {
		return nil, "", err
	}
	defer cs.Close()
	res, err := cs.CallTool(Ctx(t, 20*time.Second), &sdk.CallToolParams{Name: "whoami"})
	if err != nil {
		return nil, "", err
	}
	var out struct {
		Claims    map[string]any `json:"claims"`
		Assertion string         `json:"assertion"`
	}
	if err := json.Unmarshal([]byte(res.Content[0].(*sdk.TextContent).Text), &out); err != nil {
		t.Fatalf("whoami: %v", err)
	}
	return out.Claims, out.Assertion, nil
}

// verifyAt asks the verifier about an assertion (at a given time when at
// is not zero) and returns its reason, "" when it verified.
func verifyAt(t *testing.T, upstream, assertion string, at int64) string {
	t.Helper()
	u := strings.TrimSuffix(upstream, "/mcp") + "/verify"
	if at != 0 {
		u += fmt.Sprintf("?at=%d", at)
	}
	req, _ := http.NewRequest("POST", u, nil)
	req.Header.Set("Mcpgate-Identity-Assertion", assertion)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("verify: %d %s", resp.StatusCode, b)
	}
	if out.OK != (resp.StatusCode == 200) {
		t.Fatalf("verify: %d %s", resp.StatusCode, b)
	}
	return out.Reason
}

// TestIdentityAssertionVerifiedByUpstream: an MCP server that trusts only
// mcpgate's signed identity assertions verifies them with the npm jose
// package (JWKS from the gateway's well-known URL, ES256, typ, iss, aud,
// exp, single-use jti; docs/upstream-identity.md), behind a gateway whose
// callers get tokens from the certified OpenID provider. The upstream sees
// the caller's identity from the verified token and refuses a replayed, a
// tampered, an expired and a wrong-audience assertion; a client-sent
// assertion header never reaches it; the key file keeps the keys across a
// gateway restart.
func TestIdentityAssertionVerifiedByUpstream(t *testing.T) {
	op := StartOP(t, "plain")
	port := FreePort(t)
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	up, ready := Start(t, "assertion-upstream", []string{Node22(t), "fixtures/assertion/server.mjs"}, []string{
		"PORT=0", "JWKS_URL=" + gwURL + "/.well-known/mcpgate/identity-jwks.json", "ISSUER=" + gwURL, "AUDIENCE=urn:assertion-upstream",
	}, readyLine)
	upURL := ready[1]
	keyFile := filepath.Join(t.TempDir(), "assertion-keys.json")
	cfgFile := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
issuers:
  - issuer: %s
upstreams:
  - path: /mcp
    url: %s
    scopes_supported: [mcp:read]
    upstream_auth:
      identity_assertion:
        audience: urn:assertion-upstream
  - path: /other
    url: %s
    scopes_supported: [mcp:read]
    upstream_auth:
      identity_assertion:
        audience: urn:another-upstream
identity_assertion_keys:
  key_file: %s
`, port, gwURL, op.Issuer, upURL, upURL, keyFile)), 0o600)
	start := func() *Gateway {
		p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", cfgFile}, nil, regexp.MustCompile(`mcpgate serving`))
		gw := &Gateway{URL: gwURL, Proc: p}
		gw.WaitReady(t)
		return gw
	}
	gw := start()

	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gwURL+"/mcp", "mcp:read", nil)
	claims, assertion, err := whoami(t, gwURL+"/mcp", headerRT{auth: "Bearer " + tok})
	if err != nil {
		t.Fatalf("whoami: %v\n%s", err, up.Output())
	}
	subID, _ := claims["sub_id"].(map[string]any)
	if claims["iss"] != gwURL || claims["aud"] != "urn:assertion-upstream" || claims["client_id"] != "mcp-cc" ||
		!strings.Contains(fmt.Sprint(claims["scope"]), "mcp:read") || claims["sub"] == "" || subID["iss"] != op.Issuer || subID["sub"] != claims["sub"] {
		t.Fatalf("claims the upstream verified: %v", claims)
	}
	if strings.Contains(assertion, tok) {
		t.Fatal("the caller's token went upstream")
	}
	exp := int64(claims["exp"].(float64))

	// the checks an upstream makes, each failing on its own
	if r := verifyAt(t, upURL, assertion, 0); r != "" {
		t.Fatalf("the assertion itself: %s", r)
	}
	parts := strings.Split(assertion, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), fmt.Sprintf(`"sub":%q`, claims["sub"]), `"sub":"admin"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	for name, c := range map[string]struct {
		tok  string
		at   int64
		want string
	}{
		"tampered":  {tampered, 0, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		"expired":   {assertion, exp + 1, "ERR_JWT_EXPIRED"},
		"unsigned":  {parts[0] + "." + parts[1] + ".", 0, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		"alg none":  {base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"mcpgate-identity+jwt"}`)) + "." + parts[1] + ".", 0, "ERR_JOSE_ALG_NOT_ALLOWED"},
		"not a JWT": {"Bearer " + tok, 0, "ERR_JWS_INVALID"},
	} {
		if forged == string(payload) && name == "tampered" {
			t.Fatal("the test did not change the payload")
		}
		if r := verifyAt(t, upURL, c.tok, c.at); r != c.want {
			t.Errorf("%s: reason %q, want %q", name, r, c.want)
		}
	}
	// replayed directly at the upstream: each jti is used once
	req, _ := http.NewRequest("POST", upURL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcpgate-Identity-Assertion", assertion)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "REPLAY") {
		t.Fatalf("replayed assertion: %d %s", resp.StatusCode, b)
	}

	// the same replay through the gateway: the client's header is
	// stripped and the upstream gets a fresh assertion
	_, fresh, err := whoami(t, gwURL+"/mcp", headerRT{auth: "Bearer " + tok, name: "Mcpgate-Identity-Assertion", value: assertion})
	if err != nil || fresh == assertion || fresh == "" {
		t.Fatalf("client-sent assertion header: %v (forwarded as is: %v)", err, fresh == assertion)
	}

	// another upstream's audience: the verifier refuses it
	other, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gwURL+"/other", "mcp:read", nil)
	if _, _, err := whoami(t, gwURL+"/other", headerRT{auth: "Bearer " + other}); err == nil {
		t.Fatal("an assertion for another audience was accepted")
	}
	if !strings.Contains(up.Output(), `REFUSED ERR_JWT_CLAIM_VALIDATION_FAILED unexpected "aud" claim value`) {
		t.Fatalf("the upstream did not refuse the audience:\n%s", up.Output())
	}

	// the key file: private to the gateway, and a restart keeps the keys
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	before := jwksKIDs(t, gwURL)
	gw.Proc.Stop()
	start()
	if after := jwksKIDs(t, gwURL); strings.Join(after, ",") != strings.Join(before, ",") || len(before) == 0 {
		t.Fatalf("keys before the restart %v, after %v", before, after)
	}
	if r := verifyAt(t, upURL, assertion, 0); r != "" {
		t.Fatalf("an assertion from before the restart: %s", r)
	}
}

func jwksKIDs(t *testing.T, gwURL string) []string {
	t.Helper()
	resp, err := http.Get(gwURL + "/.well-known/mcpgate/identity-jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("JWKS: %v %v", err, resp.Header)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("a private key in the JWKS")
		}
		kids = append(kids, k.Kid)
	}
	return kids
}
