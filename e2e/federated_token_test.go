//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// idpUpstream is an MCP server (Streamable HTTP, stateless) standing for a
// server whose audience is the identity provider (a Google Workspace MCP
// server behind Google sign-in): its tool whoami asks the provider, by
// introspection, whose token it received and for which client. It
// records every Authorization it gets.
type idpUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex // guards tokens
	tokens []string
}

func startIDPUpstream(t *testing.T, op *OP) *idpUpstream {
	u := &idpUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		u.mu.Lock()
		u.tokens = append(u.tokens, tok)
		u.mu.Unlock()
		var result any
		switch m.Method {
		case "initialize":
			result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo": map[string]any{"name": "idp-upstream", "version": "1"}}
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{"name": "whoami", "inputSchema": map[string]any{"type": "object"}}}}
		case "tools/call":
			active, sub, client := introspect(op, tok)
			result = map[string]any{"content": []any{map[string]any{"type": "text", "text": fmt.Sprintf("provider says active=%v sub=%s client=%s", active, sub, client)}}}
		default:
			if m.ID == nil { // a notification
				w.WriteHeader(http.StatusAccepted)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if result == nil { // server/discover and the rest: a 2025-11-25 server
			json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "method not found"}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *idpUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.tokens) == 0 {
		return ""
	}
	return u.tokens[len(u.tokens)-1]
}

// userinfoSub is the provider's answer to "whose token is this".
func userinfoSub(op *OP, tok string) string {
	req, _ := http.NewRequest("GET", op.Issuer+"/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "error:" + err.Error()
	}
	defer resp.Body.Close()
	var c struct {
		Sub string `json:"sub"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &c) != nil {
		return fmt.Sprintf("refused(%d)", resp.StatusCode)
	}
	return c.Sub
}

// introspect is the provider's introspection of tok (client gateway-rs).
func introspect(op *OP, tok string) (active bool, sub, clientID string) {
	req, _ := http.NewRequest("POST", op.Issuer+"/token/introspection", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gateway-rs", "rs-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "", err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Active   bool   `json:"active"`
		Sub      string `json:"sub"`
		ClientID string `json:"client_id"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	return r.Active, r.Sub, r.ClientID
}

func buildEchoServer(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "echoserver")
	if out, err := exec.Command("go", "build", "-o", bin, "../internal/upstream/stdio/testdata/echoserver").CombinedOutput(); err != nil {
		t.Fatalf("build echoserver: %v\n%s", err, out)
	}
	return bin
}

// TestFederatedTokenToUpstreamAndChild: the built-in server federates the
// sign-in to the certified OP (short profile: access tokens live 5 s) and
// keeps the OP's tokens. An HTTP upstream with federated_token receives
// alice's own OP token (the OP's introspection and userinfo say: alice,
// issued to the built-in server's federation client), never the client's
// token; a stdio child with child_env reports from inside its process the
// token it got, alice's in alice's session and bob's in bob's. After the
// OP token expires, the built-in server refreshes it at the OP and the
// upstream gets the new one without a new sign-in.
func TestFederatedTokenToUpstreamAndChild(t *testing.T) {
	port := FreePort(t)
	op := StartOP(t, "short", fmt.Sprintf("OP_FEDTOKEN_REDIRECT=http://127.0.0.1:%d/federation/callback", port))
	up := startIDPUpstream(t, op)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  federation:
    issuer: %s
    client_id: mcp-fedtoken
    client_secret_env: FED_SECRET
    scopes: [openid, email]
    tokens:
      key_env: FED_TOKENS_KEY
upstreams:
  - path: /workspace/mcp
    url: %s
    scopes_supported: [mcp:read]
    upstream_auth:
      federated_token: {}
  - path: /tool/mcp
    command: [%s]
    scopes_supported: [mcp:read]
    upstream_auth:
      federated_token: {}
      child_env: IDP_TOKEN
limits:
  requests_per_second: 200
  burst: 400
`, port, filepath.Join(dir, "as.db"), op.Issuer, up.srv.URL, buildEchoServer(t))
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-fedtoken", []string{Mcpgate(t), "serve", "--config", file},
		[]string{"MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw"), "FED_SECRET=fedtoken-secret",
			"FED_TOKENS_KEY=an e2e sealing key of at least thirty-two bytes"}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	ws, tool := gw.Endpoint("/workspace/mcp"), gw.Endpoint("/tool/mcp")

	users := map[string]*cli{}
	for _, u := range []string{"alice", "bob"} {
		c := newCLI(t)
		c.env = append(c.env, "BROWSER_USER="+u)
		c.must("login", "--store", "file", "--timeout", "60s", "--browser", c.browse, ws)
		c.must("login", "--store", "file", "--timeout", "60s", "--browser", c.browse, tool)
		users[u] = c
	}
	call := func(c *cli, endpoint, tool, args string) string {
		return c.must("call", "--store", "file", "--no-login", "--tool", tool, "--args", args, endpoint)
	}

	// the HTTP upstream gets alice's own token from the OP
	// (active at the OP for its client mcp-fedtoken: not the client's
	// token, which the built-in server issued)
	const alices = "provider says active=true sub=alice client=mcp-fedtoken"
	if out := call(users["alice"], ws, "whoami", `{}`); !strings.Contains(out, alices) {
		t.Fatalf("whoami: %s", out)
	}
	first := up.last()

	// each user's stdio child has that user's token in IDP_TOKEN
	seen := map[string]string{}
	for u, c := range users {
		// a 5-second token may expire between the child's answer and the
		// check: only then is the child asked again (a token of anyone
		// else fails at once)
		for attempt := 0; ; attempt++ {
			out := call(c, tool, "env", `{"name":"IDP_TOKEN"}`)
			tok := regexp.MustCompile(`[A-Za-z0-9_-]{20,}`).FindString(out)
			if tok == "" {
				t.Fatalf("%s's child reported no token: %s", u, out)
			}
			sub := userinfoSub(op, tok)
			if strings.HasPrefix(sub, "refused") && attempt < 3 {
				continue
			}
			if sub != u {
				t.Fatalf("%s's child holds a token of %q", u, sub)
			}
			seen[u] = tok
			break
		}
	}
	if seen["alice"] == seen["bob"] {
		t.Fatal("alice's and bob's children got the same token")
	}

	// the OP token expires; the built-in server refreshes it at the OP
	before := strings.Count(op.Proc.Output(), "GRANT refresh_token mcp-fedtoken")
	time.Sleep(6 * time.Second)
	if out := call(users["alice"], ws, "whoami", `{}`); !strings.Contains(out, alices) {
		t.Fatalf("whoami after expiry: %s", out)
	}
	if up.last() == first {
		t.Fatal("the upstream got the expired token again")
	}
	if n := strings.Count(op.Proc.Output(), "GRANT refresh_token mcp-fedtoken") - before; n != 1 {
		t.Fatalf("%d refresh grants at the OP, want 1\n%s", n, op.Proc.Output())
	}
	if strings.Contains(p.Output(), first) || strings.Contains(p.Output(), seen["bob"]) {
		t.Fatal("the gateway logged a provider token")
	}
}
