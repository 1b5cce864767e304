//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// checkingUpstream is an MCP server over HTTP (initialize, tools/call
// echo) that accepts only an access token for its own audience from one
// issuer, verified against the issuer's JWKS, and records every token it
// accepted.
type checkingUpstream struct {
	URL, Resource  string // MCP endpoint; the audience it accepts
	issuer, jwks   string
	mu             sync.Mutex // guards seen, refused
	seen           []seenToken
	refused        int
	listener       net.Listener
	shutdownServer func()
}

type seenToken struct {
	raw    string
	claims map[string]any
}

func startCheckingUpstream(t *testing.T) *checkingUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &checkingUpstream{listener: ln}
	u.Resource = "http://" + ln.Addr().String() + "/"
	u.URL = u.Resource + "mcp"
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *checkingUpstream) trust(issuer, jwks string) { u.issuer, u.jwks = issuer, jwks }

func (u *checkingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims, err := u.verify(raw)
	if err != nil {
		u.mu.Lock()
		u.refused++
		u.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	u.mu.Lock()
	u.seen = append(u.seen, seenToken{raw, claims})
	u.mu.Unlock()
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &msg)
	if msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result any
	switch msg.Method {
	case "initialize":
		result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]any{"name": "checking-upstream", "version": "1"}}
	default:
		act, _ := claims["act"].(map[string]any)
		result = map[string]any{"content": []any{map[string]any{"type": "text", "text": fmt.Sprintf("sub=%v act=%v aud=%v", claims["sub"], act["sub"], claims["aud"])}}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Mcp-Session-Id", "s-1")
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": result})
}

// verify checks raw with a standard JOSE library: signature by the
// issuer's keys, iss, aud = this upstream, not expired.
func (u *checkingUpstream) verify(raw string) (map[string]any, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("not a JWT: %v", err)
	}
	resp, err := http.Get(u.jwks)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, err
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return nil, fmt.Errorf("unknown key %q", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return nil, err
	}
	if err := std.Validate(jwt.Expected{Issuer: u.issuer, AnyAudience: jwt.Audience{u.Resource}, Time: time.Now()}); err != nil {
		return nil, err
	}
	return all, nil
}

func (u *checkingUpstream) tokens() []seenToken {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenToken(nil), u.seen...)
}

// mcpPost posts one JSON-RPC message with tok and returns the status,
// headers and body.
func mcpPost(t *testing.T, url, tok, sid, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const exInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
const exCall = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`

// exchangeScenario runs the checks both identity providers must pass:
// the call succeeds with an exchanged token the upstream verified (its
// audience, the gateway's client as actor, the caller as subject), never
// the caller's token; the exchanged token is refused by the gateway (its
// audience is the upstream's); a refused exchange (/denied, a target the
// provider does not serve) is a 403 JSON-RPC error with the reason.
func exchangeScenario(t *testing.T, gw *Gateway, up *checkingUpstream, caller, callerDenied, callerSub, actor string) {
	st, h, body := mcpPost(t, gw.Endpoint("/mcp"), caller, "", exInit)
	if st != 200 {
		t.Fatalf("initialize: %d %s", st, body)
	}
	st, _, body = mcpPost(t, gw.Endpoint("/mcp"), caller, h.Get("Mcp-Session-Id"), exCall)
	if want := fmt.Sprintf("sub=%s act=%s aud=%s", callerSub, actor, up.Resource); st != 200 || !strings.Contains(body, want) {
		t.Fatalf("tools/call: %d %s, want %q", st, body, want)
	}
	seen := up.tokens()
	if len(seen) < 2 {
		t.Fatalf("the upstream accepted %d requests", len(seen))
	}
	for _, s := range seen {
		if s.raw == caller || s.claims["client_id"] != actor {
			t.Fatalf("the upstream got the caller's token or another client's: %v", s.claims)
		}
	}
	if seen[0].raw != seen[1].raw {
		t.Fatal("the exchanged token was not reused (cache)")
	}
	if st, _, body := mcpPost(t, gw.Endpoint("/mcp"), seen[0].raw, "", exInit); st != http.StatusUnauthorized {
		t.Fatalf("the exchanged token was accepted by the gateway: %d %s", st, body)
	}
	before := len(up.tokens())
	st, _, body = mcpPost(t, gw.Endpoint("/denied"), callerDenied, "", exInit)
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	if st != http.StatusForbidden || !strings.Contains(e.Error.Message, "invalid_target") || e.Error.Code == 0 {
		t.Fatalf("refused exchange: %d %s", st, body)
	}
	up.mu.Lock()
	refused := up.refused
	up.mu.Unlock()
	if len(up.tokens()) != before || refused != 0 {
		t.Fatal("a refused exchange reached the upstream")
	}
}

// TestTokenExchangeBuiltin: the gateway exchanges callers' tokens at its
// own built-in authorization server (builtin.exchange_resources) for an
// internal API's audience.
func TestTokenExchangeBuiltin(t *testing.T) {
	up := startCheckingUpstream(t)
	port := FreePort(t)
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	up.trust(gwURL, gwURL+"/jwks")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  clients:
    - id: caller
      secret_env: CALLER_SECRET
      grant_types: [client_credentials]
      scopes: [orders:read]
    - id: gw-exchange
      secret_env: GX_SECRET
      grant_types: [urn:ietf:params:oauth:grant-type:token-exchange]
  exchange_resources:
    - resource: %[3]s
      scopes: [orders:read]
upstreams:
  - name: api
    path: /mcp
    url: %[4]s
    scopes_supported: [orders:read]
    upstream_auth:
      token_exchange:
        issuer: %[5]s
        client_id: gw-exchange
        client_secret_env: GX_SECRET
        resource: %[3]s
  - name: denied
    path: /denied
    url: %[4]s
    scopes_supported: [orders:read]
    upstream_auth:
      token_exchange:
        issuer: %[5]s
        client_id: gw-exchange
        client_secret_env: GX_SECRET
        resource: https://unknown.example/
`, port, filepath.Join(dir, "as.db"), up.Resource, up.URL, gwURL)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-exchange", []string{Mcpgate(t), "serve", "--config", file},
		[]string{"CALLER_SECRET=caller-secret", "GX_SECRET=gx-secret", "MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: gwURL, Proc: p}
	gw.WaitReady(t)
	as := &OP{Issuer: gwURL}
	caller, _ := as.ClientCredentials(t, "caller", "caller-secret", gw.Endpoint("/mcp"), "orders:read", nil)
	denied, _ := as.ClientCredentials(t, "caller", "caller-secret", gw.Endpoint("/denied"), "orders:read", nil)
	exchangeScenario(t, gw, up, caller, denied, "caller", "gw-exchange")
	if !strings.Contains(p.Output(), `token exchanged`) || !strings.Contains(p.Output(), `token exchange refused`) {
		t.Fatalf("the built-in server did not log the exchanges:\n%s", p.Output())
	}
}

// TestTokenExchangeOP: the same against the bench's certified OpenID
// provider with the fixture's RFC 8693 grant (OP_TOKEN_EXCHANGE).
func TestTokenExchangeOP(t *testing.T) {
	up := startCheckingUpstream(t)
	op := StartOP(t, "plain", "OP_TOKEN_EXCHANGE="+up.Resource)
	up.trust(op.Issuer, op.Issuer+"/jwks")
	port := FreePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
issuers:
  - issuer: %[2]s
upstreams:
  - name: api
    path: /mcp
    url: %[3]s
    scopes_supported: [mcp:read]
    upstream_auth:
      token_exchange:
        issuer: %[2]s
        client_id: gw-exchange
        client_secret_env: GX_SECRET
        resource: %[4]s
        scopes: [mcp:read]
  - name: denied
    path: /denied
    url: %[3]s
    scopes_supported: [mcp:read]
    upstream_auth:
      token_exchange:
        issuer: %[2]s
        client_id: gw-exchange
        client_secret_env: GX_SECRET
        resource: https://unknown.example/
`, port, op.Issuer, up.URL, up.Resource)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-exchange-op", []string{Mcpgate(t), "serve", "--config", file},
		[]string{"GX_SECRET=gx-secret"}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	caller, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/mcp"), "mcp:read", nil)
	denied, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/denied"), "mcp:read", nil)
	exchangeScenario(t, gw, up, caller, denied, "mcp-cc", "gw-exchange")
	out := op.Proc.Output()
	if n := strings.Count(out, "EXCHANGED gw-exchange mcp-cc "+up.Resource); n != 1 {
		t.Fatalf("the provider exchanged %d times, want 1 (the gateway caches):\n%s", n, out)
	}
	if !strings.Contains(out, "EXCHANGE_REFUSED invalid_target") {
		t.Fatalf("no refused exchange at the provider:\n%s", out)
	}
}
