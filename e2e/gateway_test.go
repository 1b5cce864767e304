//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// bearerRT adds a fixed Authorization header (the official Go SDK client
// stands in for any MCP client that already holds a token).
type bearerRT struct {
	auth string
	seen *[]string
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.auth)
	return http.DefaultTransport.RoundTrip(r)
}

// connect opens an MCP session with the official Go SDK client.
func connect(t *testing.T, endpoint, token string) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "e2e", Version: "1"}, nil)
	tr := &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearerRT{auth: "Bearer " + token}}, MaxRetries: -1}
	cs, err := c.Connect(Ctx(t, 30*time.Second), tr, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(Ctx(t, 20*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func callEcho(t *testing.T, cs *sdk.ClientSession, msg string) string {
	t.Helper()
	res, err := cs.CallTool(Ctx(t, 20*time.Second), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": msg}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func post(t *testing.T, url, auth, body string) (int, http.Header, string) {
	t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return postHeaders(t, url, body, h)
}

// postHeaders POSTs a JSON-RPC body with the MCP Accept header and hdr.
func postHeaders(t *testing.T, url, body string, hdr http.Header) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`

// startEverythingHTTP runs the official server-everything over Streamable
// HTTP (or legacy SSE) and returns its endpoint.
func startEverythingHTTP(t *testing.T, mode string) string {
	port := FreePort(t)
	Start(t, "server-everything-"+mode, []string{"node", Module(t, "@modelcontextprotocol/server-everything/dist/index.js"), mode},
		[]string{fmt.Sprintf("PORT=%d", port)}, regexp.MustCompile(`(?i)listening|running`))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if mode == "sse" {
		return base + "/sse"
	}
	return base + "/mcp"
}

// protect starts the plain OP profile and a gateway (args follow --issuer)
// and returns them, the MCP endpoint, and a client-credentials token for it.
func protect(t *testing.T, args ...string) (*OP, *Gateway, string, string) {
	op := StartOP(t, "plain")
	gw := StartGateway(t, nil, append([]string{"--issuer", op.Issuer}, args...)...)
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", nil)
	return op, gw, mcpURL, tok
}

// TestHTTPUpstreamWithCertifiedOP: server-everything behind the gateway,
// tokens from oidc-provider (client credentials with a resource indicator),
// the official Go SDK as client.
func TestHTTPUpstreamWithCertifiedOP(t *testing.T) {
	op := StartOP(t, "plain")
	up := startEverythingHTTP(t, "streamableHttp")
	gw := StartGateway(t, nil, "--issuer", op.Issuer, "--upstream", up, "--scope", "mcp:read")
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")

	status, hdr, body := post(t, mcpURL, "", initialize)
	if status != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), `resource_metadata="`+gw.URL+`/.well-known/oauth-protected-resource/mcp"`) {
		t.Fatalf("no token: %d %v %s", status, hdr, body)
	}
	resp, err := http.Get(gw.URL + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var prm struct {
		Resource string   `json:"resource"`
		AS       []string `json:"authorization_servers"`
	}
	json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if prm.Resource != mcpURL || len(prm.AS) != 1 || prm.AS[0] != op.Issuer {
		t.Fatalf("PRM %+v", prm)
	}

	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", nil)
	cs := connect(t, mcpURL, tok)
	names := toolNames(t, cs)
	if len(names) < 5 {
		t.Fatalf("tools through the gateway: %v", names)
	}
	if got := callEcho(t, cs, "through the gateway"); !strings.Contains(got, "through the gateway") {
		t.Fatalf("echo: %q", got)
	}

	// A token for another resource is refused.
	other, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", "http://127.0.0.1:1/mcp", "mcp:read", nil)
	if status, _, _ := post(t, mcpURL, "Bearer "+other, initialize); status != 401 {
		t.Fatalf("token for another resource: %d", status)
	}
}

// TestStdioUpstream: server-everything as a stdio command, one child per
// session.
func TestStdioUpstream(t *testing.T) {
	_, gw, mcpURL, tok := protect(t, "--", "node", Module(t, "@modelcontextprotocol/server-everything/dist/index.js"), "stdio")
	a := connect(t, mcpURL, tok)
	b := connect(t, mcpURL, tok)
	if len(toolNames(t, a)) < 5 {
		t.Fatal("no tools over stdio")
	}
	if got := callEcho(t, b, "stdio hello"); !strings.Contains(got, "stdio hello") {
		t.Fatalf("echo: %q", got)
	}
	resp, err := http.Get(gw.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v", err)
	}
}

// TestLegacySSEUpstream: the legacy HTTP+SSE transport of server-everything
// behind the gateway, served to a modern client.
func TestLegacySSEUpstream(t *testing.T) {
	_, _, mcpURL, tok := protect(t, "--upstream", startEverythingHTTP(t, "sse"), "--upstream-transport", "sse")
	cs := connect(t, mcpURL, tok)
	if got := callEcho(t, cs, "legacy"); !strings.Contains(got, "legacy") {
		t.Fatalf("echo over legacy upstream: %q", got)
	}
}

// TestOpaqueTokensViaIntrospection: oidc-provider issues opaque tokens; the
// gateway introspects them with its own client credentials.
func TestOpaqueTokensViaIntrospection(t *testing.T) {
	op := StartOP(t, "opaque")
	up := startEverythingHTTP(t, "streamableHttp")
	port := FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
issuers:
  - issuer: %s
    introspection:
      client_id: gateway-rs
      client_secret_env: RS_SECRET
upstreams:
  - url: %s
`, port, op.Issuer, up)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"RS_SECRET=rs-secret"}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", nil)
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("the opaque profile issued a JWT")
	}
	cs := connect(t, mcpURL, tok)
	if len(toolNames(t, cs)) == 0 {
		t.Fatal("no tools with an introspected token")
	}
	if status, _, _ := post(t, mcpURL, "Bearer not-a-real-token", initialize); status != 401 {
		t.Fatalf("unknown opaque token: %d", status)
	}
	if strings.Contains(p.Output(), "rs-secret") || strings.Contains(p.Output(), tok) {
		t.Fatal("the gateway logged a secret or a token")
	}
}

// TestDPoPBoundTokenFromOP: a DPoP-bound token from oidc-provider, used with
// proofs at the gateway; the same token as Bearer is refused.
func TestDPoPBoundTokenFromOP(t *testing.T) {
	op := StartOP(t, "plain")
	up := startEverythingHTTP(t, "streamableHttp")
	gw := StartGateway(t, nil, "--issuer", op.Issuer, "--upstream", up, "--dpop", "required")
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok, typ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", func(r *http.Request) {
		proof, err := dpop.NewProof(key, "ES256", "POST", r.URL.String(), dpop.ProofOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("DPoP", proof)
	})
	if !strings.EqualFold(typ, "DPoP") {
		t.Fatalf("token_type %q, want DPoP", typ)
	}
	send := func(body string, withProof bool, scheme string) (int, http.Header, string) {
		h := http.Header{"Authorization": {scheme + " " + tok}}
		if withProof {
			proof, _ := dpop.NewProof(key, "ES256", "POST", mcpURL, dpop.ProofOptions{AccessToken: tok, Body: []byte(body), ContentDigest: true})
			h.Set("DPoP", proof)
		}
		return postHeaders(t, mcpURL, body, h)
	}
	if status, _, body := send(initialize, true, "DPoP"); status != 200 {
		t.Fatalf("DPoP request: %d %s", status, body)
	}
	if status, _, _ := send(initialize, false, "Bearer"); status != 401 {
		t.Fatalf("DPoP-bound token as Bearer: %d", status)
	}
	if status, hdr, _ := send(initialize, false, "DPoP"); status != 401 || !strings.Contains(strings.Join(hdr.Values("WWW-Authenticate"), " "), "invalid_dpop_proof") {
		t.Fatalf("no proof: %d %v", status, hdr)
	}
}

// TestTypeScriptSDKClientOAuthFlow: the official TypeScript SDK client
// discovers the OP from the gateway's metadata, registers, logs in
// (headless, by form posts), gets a token for the gateway's resource and
// calls tools.
func TestTypeScriptSDKClientOAuthFlow(t *testing.T) {
	op := StartOP(t, "plain")
	up := startEverythingHTTP(t, "streamableHttp")
	gw := StartGateway(t, nil, "--issuer", op.Issuer, "--upstream", up, "--scope", "mcp:read")
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	p, _ := Start(t, "ts-client", []string{Node22(t), "fixtures/client/run.mjs", mcpURL}, nil, nil)
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Steps []string          `json:"steps"`
		Auth  map[string]string `json:"authorizationRequest"`
		Tools []string          `json:"tools"`
		Echo  string            `json:"echo"`
	}
	lines := strings.Split(strings.TrimSpace(p.Output()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil {
		t.Fatalf("client output: %s", p.Output())
	}
	if strings.Join(out.Steps, ",") != "unauthorized,logged-in,token,connected" {
		t.Fatalf("flow steps %v", out.Steps)
	}
	if out.Auth["resource"] != mcpURL || out.Auth["code_challenge_method"] != "S256" || !strings.Contains(out.Auth["scope"], "mcp:read") {
		t.Fatalf("authorization request %v", out.Auth)
	}
	if len(out.Tools) < 5 || !strings.Contains(out.Echo, "hello from the TS SDK") {
		t.Fatalf("tools %v echo %q", out.Tools, out.Echo)
	}
}

// TestSIGHUPReloadsPolicyAndMetricsListener: a running gateway re-reads its
// file on SIGHUP (the session survives, the new policy applies) and serves
// Prometheus metrics on its own listener.
func TestSIGHUPReloadsPolicyAndMetricsListener(t *testing.T) {
	op := StartOP(t, "plain")
	up := startEverythingHTTP(t, "streamableHttp")
	port, mport := FreePort(t), FreePort(t)
	write := func(deny bool) string {
		rule := ""
		if deny {
			rule = "\n    policy:\n      tools:\n        - {match: echo, deny: true}"
		}
		cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nmetrics:\n  listen: 127.0.0.1:%d\nissuers:\n  - issuer: %s\nupstreams:\n  - url: %s%s\n", port, mport, op.Issuer, up, rule)
		return cfg
	}
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(write(false)), 0o600)
	p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", nil)
	cs := connect(t, mcpURL, tok)
	if got := callEcho(t, cs, "before"); !strings.Contains(got, "before") {
		t.Fatalf("echo before reload: %q", got)
	}
	os.WriteFile(file, []byte(write(true)), 0o600)
	p.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Output(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("no reload logged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cs.CallTool(Ctx(t, 10*time.Second), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "after"}}); err == nil {
		t.Fatal("echo still allowed after the reload denied it")
	}
	if len(toolNames(t, cs)) == 0 {
		t.Fatal("the session did not survive the reload")
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `mcpgate_requests_total{decision="deny",method="tools/call"`) {
		t.Fatalf("metrics lack the denial: %.2000s", b)
	}
	if r, _ := http.Get(gw.URL + "/metrics"); r != nil && r.StatusCode == 200 {
		t.Fatal("/metrics is also on the main listener")
	}
}
