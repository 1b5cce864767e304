package gateway

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/config"
)

const assertCallBody = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`

// assertionGateway is a test gateway whose upstream gets identity
// assertions configured by ia.
func assertionGateway(t *testing.T, ia config.IdentityAssertion) *testGateway {
	t.Helper()
	return startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{IdentityAssertion: &ia}
	})
}

// jwks fetches the gateway's identity assertion keys.
func (tg *testGateway) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(tg.url + assertionJWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != 200 {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
	}
	return set
}

// verifyAssertion checks an assertion the way an upstream must (go-jose,
// ES256 only, typ, a kid of the JWKS) and returns its claims.
func verifyAssertion(t *testing.T, tok string, set jose.JSONWebKeySet) map[string]any {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q: %v", tok, err)
	}
	h := parsed.Headers[0]
	if h.ExtraHeaders[jose.HeaderType] != assertionTyp || h.Algorithm != "ES256" {
		t.Fatalf("header %+v", h)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS", h.KeyID)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return claims
}

// upstreamAssertion is the one value of header the upstream last got.
func (tg *testGateway) upstreamAssertion(t *testing.T, header string) string {
	t.Helper()
	v := tg.up.lastHeader().Values(header)
	if len(v) != 1 {
		t.Fatalf("upstream got %d values of %s: %q", len(v), header, v)
	}
	return v[0]
}

func (tg *testGateway) call(t *testing.T, tok string, hdr ...string) reply {
	t.Helper()
	return tg.do(t, "POST", "/mcp", assertCallBody, with(bearer(tok), hdr...))
}

// TestIdentityAssertionClaims: the upstream gets an ES256 JWT with the
// documented typ, signed by a key of the published JWKS, with exactly the
// documented claims taken from the verified token and the configuration.
func TestIdentityAssertionClaims(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{})
	if r := tg.call(t, tg.token(t, "alice", "mcp:read")); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	c := verifyAssertion(t, tg.upstreamAssertion(t, config.DefaultAssertionHeader), tg.jwks(t))
	want := map[string]any{
		"iss": tg.url, "sub": "alice", "aud": tg.up.srv.URL, "client_id": "test-client", "scope": "mcp:read",
		"sub_id": map[string]any{"format": "iss_sub", "iss": tg.idp.Issuer, "sub": "alice"},
	}
	for k, v := range want {
		if got, _ := json.Marshal(c[k]); string(got) != string(must(json.Marshal(v))) {
			t.Errorf("claim %s = %s, want %v", k, got, v)
		}
	}
	if names := slices.Sorted(maps.Keys(c)); !slices.Equal(names, []string{"aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sub", "sub_id"}) {
		t.Errorf("claims %v", names)
	}
	iat, exp := int64(c["iat"].(float64)), int64(c["exp"].(float64))
	if exp-iat != 120 || iat < time.Now().Add(-time.Minute).Unix() {
		t.Errorf("iat %d exp %d: want a 2m lifetime from now", iat, exp)
	}
	if jti, _ := c["jti"].(string); len(jti) != 22 {
		t.Errorf("jti %q", jti)
	}
	if tg.up.lastHeader().Get("Authorization") != "" {
		t.Error("the caller's token went upstream")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestIdentityAssertionStripsClientHeader: a client that sends the
// assertion header itself (any case, several times) never reaches the
// upstream with it; the upstream gets the gateway's one value.
func TestIdentityAssertionStripsClientHeader(t *testing.T) {
	for _, hdr := range []string{"", "X-User-Assertion"} {
		t.Run("header="+hdr, func(t *testing.T) {
			tg := assertionGateway(t, config.IdentityAssertion{Header: hdr, Audience: "urn:internal-api"})
			name := (&config.IdentityAssertion{Header: hdr}).HeaderName()
			forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
			req, _ := http.NewRequest("POST", tg.url+"/mcp", strings.NewReader(assertCallBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+tg.token(t, "alice", "mcp:read"))
			req.Header[strings.ToLower(name)] = []string{forged}
			req.Header.Add(name, forged)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("call: %d", resp.StatusCode)
			}
			got := tg.upstreamAssertion(t, name)
			if got == forged {
				t.Fatal("the client's assertion went upstream")
			}
			if c := verifyAssertion(t, got, tg.jwks(t)); c["sub"] != "alice" || c["aud"] != "urn:internal-api" {
				t.Fatalf("claims %v", c)
			}
		})
	}
}

// TestIdentityAssertionOddSubject: a subject full of JSON and header
// syntax is one claim value, nothing more: no claim injected, no header.
func TestIdentityAssertionOddSubject(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{})
	odd := "alice\",\"admin\":true,\"aud\":\"x\r\nX-Injected: 1\u2028\u00e9\x00"
	claims := tg.idp.Claims(odd, tg.url+"/mcp", "mcp:read")
	claims["client_id"] = `c","scope":"mcp:admin`
	if r := tg.call(t, tg.idp.Sign(t, "RS256", claims)); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	c := verifyAssertion(t, tg.upstreamAssertion(t, config.DefaultAssertionHeader), tg.jwks(t))
	if c["sub"] != odd || c["client_id"] != claims["client_id"] || c["scope"] != "mcp:read" || c["aud"] != tg.up.srv.URL {
		t.Fatalf("claims %v", c)
	}
	if _, ok := c["admin"]; ok {
		t.Fatal("a claim was injected")
	}
	if tg.up.lastHeader().Get("X-Injected") != "" {
		t.Fatal("a header was injected")
	}
}

// TestIdentityAssertionAct: a delegated token's actor chain is repeated
// with its identity members only; a malformed one refuses the request
// before anything is forwarded.
func TestIdentityAssertionAct(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{})
	claims := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
	claims["act"] = map[string]any{"sub": "agent-7", "iss": "https://idp.example", "exp": 1, "admin": true,
		"act": map[string]any{"sub": "svc", "aud": "x"}}
	if r := tg.call(t, tg.idp.Sign(t, "RS256", claims)); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	c := verifyAssertion(t, tg.upstreamAssertion(t, config.DefaultAssertionHeader), tg.jwks(t))
	if got := string(must(json.Marshal(c["act"]))); got != `{"act":{"sub":"svc"},"iss":"https://idp.example","sub":"agent-7"}` {
		t.Fatalf("act %s", got)
	}
	for _, bad := range []any{"agent", map[string]any{"iss": "x"}, map[string]any{"sub": "a", "iss": 3}, deepAct(9)} {
		hits := tg.up.hits.Load()
		claims["act"] = bad
		r := tg.call(t, tg.idp.Sign(t, "RS256", claims))
		code, msg, _ := r.rpcError(t)
		if r.status != http.StatusBadGateway || code != -50200 || !strings.Contains(msg, "act claim") {
			t.Errorf("act %v: %d %d %q", bad, r.status, code, msg)
		}
		if tg.up.hits.Load() != hits {
			t.Errorf("act %v: the request was forwarded", bad)
		}
	}
}

func deepAct(n int) any {
	if n == 0 {
		return nil
	}
	m := map[string]any{"sub": "a"}
	if inner := deepAct(n - 1); inner != nil {
		m["act"] = inner
	}
	return m
}

// TestIdentityAssertionNeverOutlivesToken: exp is capped at the access
// token's expiry.
func TestIdentityAssertionNeverOutlivesToken(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{TTL: config.Duration{Duration: 5 * time.Minute}})
	claims := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
	tokExp := time.Now().Add(40 * time.Second).Unix()
	claims["exp"] = tokExp
	if r := tg.call(t, tg.idp.Sign(t, "RS256", claims)); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	c := verifyAssertion(t, tg.upstreamAssertion(t, config.DefaultAssertionHeader), tg.jwks(t))
	if exp := int64(c["exp"].(float64)); exp > tokExp {
		t.Fatalf("assertion exp %d after the token's %d", exp, tokExp)
	}
}

// TestIdentityAssertionModes: per_request signs anew (a new jti each time);
// cached reuses the assertion of the same identity only.
func TestIdentityAssertionModes(t *testing.T) {
	for _, mode := range []string{"per_request", "cached"} {
		t.Run(mode, func(t *testing.T) {
			tg := assertionGateway(t, config.IdentityAssertion{Mode: mode})
			read := tg.token(t, "alice", "mcp:read")
			var got []string
			for _, tok := range []string{read, read, tg.token(t, "alice", "mcp:read"), tg.token(t, "alice", "mcp:read mcp:admin"), tg.token(t, "bob", "mcp:read")} {
				if r := tg.call(t, tok); r.status != 200 {
					t.Fatalf("call: %d %s", r.status, r.body)
				}
				got = append(got, tg.upstreamAssertion(t, config.DefaultAssertionHeader))
			}
			same := got[0] == got[1] && got[1] == got[2]
			if same != (mode == "cached") {
				t.Errorf("same identity, assertions reused = %v", same)
			}
			if got[3] == got[0] || got[4] == got[0] {
				t.Error("an assertion was reused for another identity")
			}
		})
	}
}

// TestIdentityAssertionAuthorizationHeader: with header Authorization the
// upstream gets "Bearer <assertion>" and never the caller's token.
func TestIdentityAssertionAuthorizationHeader(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{Header: "authorization"})
	tok := tg.token(t, "alice", "mcp:read")
	if r := tg.call(t, tok); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	v := tg.upstreamAssertion(t, "Authorization")
	jwtv, ok := strings.CutPrefix(v, "Bearer ")
	if !ok || strings.Contains(v, tok) {
		t.Fatalf("Authorization %q", v)
	}
	verifyAssertion(t, jwtv, tg.jwks(t))
}

// TestIdentityAssertionLegacyStreamRefused: a 2024-11-05 HTTP+SSE stream
// would hold one assertion longer than it lives: refused, with the reason,
// before anything reaches the upstream.
func TestIdentityAssertionLegacyStreamRefused(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{})
	for _, path := range []string{"/mcp/sse", "/mcp"} { // the endpoint, and a 2024-11-05 probe of the server URL
		r := tg.do(t, "GET", path, "", with(bearer(tg.token(t, "alice", "mcp:read")), "Accept", "text/event-stream"))
		code, msg, _ := r.rpcError(t)
		if r.status != http.StatusBadGateway || code != -50200 || !strings.Contains(msg, "Streamable HTTP client") {
			t.Fatalf("legacy stream at %s: %d %d %q", path, r.status, code, msg)
		}
	}
	if tg.up.hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
}

// TestAssertionJWKSEndpoint: the unauthenticated JWKS is a precomputed,
// cacheable document of public keys only; other methods are refused;
// without identity assertions there is no such document.
func TestAssertionJWKSEndpoint(t *testing.T) {
	tg := assertionGateway(t, config.IdentityAssertion{})
	resp, err := http.Get(tg.url + assertionJWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Content-Type") != "application/jwk-set+json" || h.Get("Cache-Control") != "public, max-age=300" || h.Get("ETag") == "" {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, h)
	}
	var raw struct{ Keys []map[string]any }
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.Keys) != 1 {
		t.Fatalf("JWKS %s", body)
	}
	k := raw.Keys[0]
	if _, private := k["d"]; private || k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] == "" {
		t.Fatalf("key %v", k)
	}
	if r := tg.do(t, "GET", assertionJWKSPath, "", map[string]string{"If-None-Match": h.Get("ETag")}); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Errorf("conditional GET: %d %q", r.status, r.body)
	}
	if r := tg.do(t, "POST", assertionJWKSPath, "{}", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", r.status)
	}
	if r := tg.do(t, "HEAD", assertionJWKSPath, "", nil); r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD: %d %q", r.status, r.body)
	}
	plain := startGateway(t, nil)
	if r := plain.do(t, "GET", assertionJWKSPath, "", nil); r.status != http.StatusNotFound {
		t.Errorf("without identity assertions: %d", r.status)
	}
}

// TestIdentityAssertionOnEvictionDelete: the DELETE the gateway sends for
// a session it evicted carries a valid assertion for the session's
// creator, so an upstream that demands one ends the session.
func TestIdentityAssertionOnEvictionDelete(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
		c.Limits.MaxHTTPSessionsPerSubject = 2
		c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{IdentityAssertion: &config.IdentityAssertion{}}
	})
	alice := tg.token(t, "alice", "mcp:read")
	for range 3 {
		tg.initialize(t, alice)
	}
	set := tg.jwks(t)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tg.up.mu.Lock()
		var del http.Header
		for _, h := range tg.up.headers {
			if h.Get("Mcp-Session-Id") != "" && h.Get("Accept") == "" {
				del = h
			}
		}
		tg.up.mu.Unlock()
		if del != nil {
			if c := verifyAssertion(t, del.Get(config.DefaultAssertionHeader), set); c["sub"] != "alice" {
				t.Fatalf("DELETE assertion claims %v", c)
			}
			return
		}
	}
	t.Fatal("no DELETE reached the upstream")
}
