package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

const listBody = `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`

func TestNoTokenGets401WithChallengeAndRPCBody(t *testing.T) {
	tg := startGateway(t, nil)
	r := tg.do(t, "POST", "/mcp", listBody, nil)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", r.status)
	}
	ch := r.header.Get("WWW-Authenticate")
	want := `Bearer resource_metadata="` + tg.url + `/.well-known/oauth-protected-resource/mcp"`
	if !strings.HasPrefix(ch, want) || !strings.Contains(ch, `scope="mcp:read"`) {
		t.Fatalf("challenge %q, want prefix %q and scope", ch, want)
	}
	if strings.Contains(ch, "error=") {
		t.Fatalf("no token was presented, challenge must not carry error: %q", ch)
	}
	// The caller is refused from its headers, before anything of the body
	// is read (issue 11 hole 8), so the request id is unknown: null, as
	// JSON-RPC 2.0 §5 has it when the id cannot be determined.
	_, _, id := r.rpcError(t)
	if string(id) != "null" {
		t.Fatalf("JSON-RPC error id %s, want null", id)
	}
	if tg.up.hits.Load() != 0 {
		t.Fatal("unauthenticated request reached the upstream")
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	tg := startGateway(t, nil)
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		r := tg.do(t, "GET", path, "", nil)
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			ScopesSupported      []string `json:"scopes_supported"`
			BearerMethods        []string `json:"bearer_methods_supported"`
		}
		if err := json.Unmarshal(r.body, &prm); err != nil {
			t.Fatal(err)
		}
		if prm.Resource != tg.url+"/mcp" || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != tg.idp.Issuer {
			t.Fatalf("%s: %+v", path, prm)
		}
		if strings.Join(prm.ScopesSupported, " ") != "mcp:read" || strings.Join(prm.BearerMethods, ",") != "header" {
			t.Fatalf("%s: %+v", path, prm)
		}
	}
}

// TestAttackTable: every row must be refused before the upstream is reached.
func TestAttackTable(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		other := c.Upstreams[0]
		other.Path, other.Name, other.Resource = "/other/mcp", "", ""
		c.Upstreams = append(c.Upstreams, other)
	})
	idp := tg.idp
	aud := tg.url + "/mcp"
	claims := func(mut func(map[string]any)) map[string]any {
		c := idp.Claims("mallory", aud, "mcp:read mcp:admin")
		mut(c)
		return c
	}
	otherIdP := testutil.NewIdP(t)
	jkt := testutil.Thumbprint(t, idp.EC.Public())
	rows := []struct {
		name   string
		hdr    map[string]string
		body   string
		path   string
		method string
		status int
	}{
		{name: "alg none", hdr: bearer(testutil.Unsigned(claims(func(map[string]any) {}))), status: 401},
		{name: "HS256 with RSA public key", hdr: bearer(idp.HS256WithPublicKey(claims(func(map[string]any) {}))), status: 401},
		{name: "missing exp", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { delete(c, "exp") }))), status: 401},
		{name: "expired", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))), status: 401},
		{name: "wrong aud", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { c["aud"] = "https://elsewhere.example/mcp" }))), status: 401},
		{name: "token for another upstream", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { c["aud"] = tg.url + "/other/mcp" }))), status: 401},
		{name: "wrong iss", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { c["iss"] = "https://evil.example" }))), status: 401},
		{name: "signed by another issuer's key", hdr: bearer(otherIdP.Sign(t, "RS256", claims(func(map[string]any) {}))), status: 401},
		{name: "garbage token", hdr: bearer("not.a.jwt"), status: 401},
		{name: "token in query", path: "/mcp?access_token=" + idp.Sign(t, "RS256", claims(func(map[string]any) {})), status: 400},
		{name: "old protocol version header without token", hdr: map[string]string{"MCP-Protocol-Version": "2024-11-05"}, status: 401},
		{name: "garbage protocol version without token", hdr: map[string]string{"MCP-Protocol-Version": "garbage"}, status: 401},
		{name: "GET stream without token", method: "GET", hdr: map[string]string{"Mcp-Session-Id": "sess-1", "MCP-Protocol-Version": "2025-11-25"}, status: 401},
		{name: "legacy GET stream without token", method: "GET", path: "/mcp/sse", status: 401},
		{name: "DELETE without token", method: "DELETE", hdr: map[string]string{"Mcp-Session-Id": "sess-1"}, status: 401},
		{name: "DPoP-bound token as Bearer", hdr: bearer(idp.Sign(t, "RS256", claims(func(c map[string]any) { c["cnf"] = map[string]any{"jkt": jkt} }))), status: 401},
		{name: "disallowed Origin", hdr: with(bearer(tg.token(t, "alice", "mcp:read")), "Origin", "https://evil.example"), status: 403},
		{name: "DNS rebinding Host", hdr: with(bearer(tg.token(t, "alice", "mcp:read")), "Host", "evil.example"), status: 403},
		{name: "deeply nested body", hdr: bearer(tg.token(t, "alice", "mcp:read")), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200) + "}", status: 400},
		// Parser differentials: the gateway must not authorize one reading
		// of a message while the upstream runs another.
		{name: "tool name and a case variant", hdr: bearer(tg.token(t, "alice", "mcp:read mcp:admin")), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","NAME":"echo"}}`, status: 400},
		{name: "duplicate tool name", hdr: bearer(tg.token(t, "alice", "mcp:read mcp:admin")), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","name":"echo"}}`, status: 400},
		{name: "method and an escaped duplicate", hdr: bearer(tg.token(t, "alice", "mcp:read mcp:admin")), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","\u006dethod":"tools/list","params":{"name":"secret"}}`, status: 400},
		{name: "oversized body", hdr: bearer(tg.token(t, "alice", "mcp:read")), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`, status: 413},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before := tg.up.hits.Load()
			method, path, body := row.method, row.path, row.body
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/mcp"
			}
			if body == "" && method == "POST" {
				body = listBody
			}
			r := tg.do(t, method, path, body, row.hdr)
			if r.status != row.status {
				t.Fatalf("status %d, want %d: %s", r.status, row.status, r.body)
			}
			if row.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if method == "POST" {
				r.rpcError(t)
			}
			if tg.up.hits.Load() != before {
				t.Fatal("refused request reached the upstream")
			}
		})
	}
}

func TestClientCredentialsNeverReachUpstream(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	r := tg.do(t, "POST", "/mcp", listBody, with(bearer(tok), "Cookie", "session=secret", "X-Mcpgate-Subject", "admin", "DPoP", "junk-proof", "Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := tg.up.lastHeader()
	for _, name := range []string{"Authorization", "Cookie", "DPoP", "Proxy-Authorization"} {
		if h.Get(name) != "" {
			t.Errorf("%s reached the upstream: %q", name, h.Get(name))
		}
	}
	for name, vals := range h {
		for _, v := range vals {
			if strings.Contains(v, tok) {
				t.Fatalf("the client's token reached the upstream in %s", name)
			}
		}
	}
	if got := h.Values("X-Mcpgate-Subject"); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("identity header = %q, want the verified subject only", got)
	}
}

func TestSessionBoundToSubject(t *testing.T) {
	tg := startGateway(t, nil)
	alice := tg.token(t, "alice", "mcp:read")
	bob := tg.token(t, "bob", "mcp:read")
	sid := tg.initialize(t, alice)
	hdr := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}

	before := tg.up.hits.Load()
	r := tg.do(t, "POST", "/mcp", listBody, with(bearer(bob), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
	if r.status != http.StatusNotFound {
		t.Fatalf("bob with alice's session: %d, want 404", r.status)
	}
	if r := tg.do(t, "DELETE", "/mcp", "", with(bearer(bob), "Mcp-Session-Id", sid)); r.status != http.StatusNotFound {
		t.Fatalf("bob deleting alice's session: %d, want 404", r.status)
	}
	if r := tg.do(t, "POST", "/mcp", listBody, with(bearer(alice), "Mcp-Session-Id", "sess-unknown")); r.status != http.StatusNotFound {
		t.Fatalf("unknown session: %d, want 404", r.status)
	}
	if tg.up.hits.Load() != before {
		t.Fatal("foreign session requests reached the upstream")
	}
	r = tg.do(t, "POST", "/mcp", listBody, with(bearer(alice), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
	if r.status != 200 {
		t.Fatalf("alice with her session: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "DELETE", "/mcp", "", with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("alice deleting her session: %d", r.status)
	}
	if r := tg.do(t, "POST", "/mcp", listBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != http.StatusNotFound {
		t.Fatalf("deleted session: %d, want 404", r.status)
	}
	_ = hdr
}

func TestPolicyFiltersListsAndDeniesWithOneChallenge(t *testing.T) {
	tg := startGateway(t, nil)
	reader := tg.token(t, "alice", "mcp:read")
	admin := tg.token(t, "root", "mcp:admin")

	names := func(body []byte) string {
		var m struct {
			Result struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			} `json:"result"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var out []string
		for _, tl := range m.Result.Tools {
			out = append(out, tl.Name)
		}
		return strings.Join(out, ",")
	}
	// JSON reply
	r := tg.do(t, "POST", "/mcp", listBody, with(bearer(reader), "Accept", "application/json"))
	if got := names(r.body); got != "echo,regional" {
		t.Fatalf("reader sees %q, want echo,regional", got)
	}
	// SSE-framed reply
	r = tg.do(t, "POST", "/mcp", listBody, bearer(reader))
	data := sseData(r.body)
	if len(data) != 1 || names([]byte(data[0])) != "echo,regional" {
		t.Fatalf("SSE list for reader: %q", data)
	}
	// Admin via the scope hierarchy sees everything.
	r = tg.do(t, "POST", "/mcp", listBody, with(bearer(admin), "Accept", "application/json"))
	if got := names(r.body); got != "echo,admin_delete,regional" {
		t.Fatalf("admin sees %q", got)
	}
	// Calling the hidden tool: 403 with one insufficient_scope challenge.
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin_delete","arguments":{}}}`
	before := tg.up.hits.Load()
	r = tg.do(t, "POST", "/mcp", call, bearer(reader))
	if r.status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.status)
	}
	ch := r.header.Values("WWW-Authenticate")
	if len(ch) != 1 || !strings.Contains(ch[0], `error="insufficient_scope"`) || !strings.Contains(ch[0], "mcp:admin") || !strings.Contains(ch[0], "mcp:read") {
		t.Fatalf("challenge %q must name every scope needed (mcp:read and mcp:admin)", ch)
	}
	if _, _, id := r.rpcError(t); string(id) != "9" {
		t.Fatalf("id %s", id)
	}
	if tg.up.hits.Load() != before {
		t.Fatal("denied call reached the upstream")
	}
	if !strings.Contains(tg.audit.String(), `"decision":"deny"`) || !strings.Contains(tg.audit.String(), `"name":"admin_delete"`) {
		t.Fatalf("audit log lacks the denial: %s", tg.audit.String())
	}
	if strings.Contains(tg.audit.String(), reader) {
		t.Fatal("audit log contains a token")
	}
	// No token with the required scope at all.
	none := tg.token(t, "carol", "other")
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(none)); r.status != http.StatusForbidden {
		t.Fatalf("missing required scope: %d, want 403", r.status)
	}
}

func statelessHeaders(tok, method, name string) map[string]string {
	h := with(bearer(tok), "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", method)
	if name != "" {
		h["Mcp-Name"] = name
	}
	return h
}

func callBody(name, args string) string {
	return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args +
		`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
}

func TestStatelessEraHeaderValidation(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	// Teach the gateway the tool definitions.
	tg.do(t, "POST", "/mcp", listBody, bearer(tok))
	rows := []struct {
		name   string
		hdr    map[string]string
		body   string
		status int
		code   int
	}{
		{"matching headers", statelessHeaders(tok, "tools/call", "echo"), callBody("echo", `{}`), 200, 0},
		{"Mcp-Name mismatch", statelessHeaders(tok, "tools/call", "admin_delete"), callBody("echo", `{}`), 400, -32020},
		{"Mcp-Method mismatch", statelessHeaders(tok, "tools/list", "echo"), callBody("echo", `{}`), 400, -32020},
		{"Mcp-Method missing", with(bearer(tok), "MCP-Protocol-Version", "2026-07-28"), callBody("echo", `{}`), 400, -32020},
		{"version header missing", with(bearer(tok), "Mcp-Method", "tools/call", "Mcp-Name", "echo"), callBody("echo", `{}`), 400, -32020},
		{"base64 Mcp-Name", statelessHeaders(tok, "tools/call", "=?base64?ZWNobw==?="), callBody("echo", `{}`), 200, 0},
		{"param header matches", with(statelessHeaders(tok, "tools/call", "regional"), "Mcp-Param-Region", "us-west1"), callBody("regional", `{"region":"us-west1"}`), 200, 0},
		{"param header differs", with(statelessHeaders(tok, "tools/call", "regional"), "Mcp-Param-Region", "eu-west1"), callBody("regional", `{"region":"us-west1"}`), 400, -32020},
		{"param header missing", statelessHeaders(tok, "tools/call", "regional"), callBody("regional", `{"region":"us-west1"}`), 400, -32020},
		{"param header without body value", with(statelessHeaders(tok, "tools/call", "regional"), "Mcp-Param-Region", "us"), callBody("regional", `{}`), 400, -32020},
		{"param header vs an ARGUMENTS variant", with(statelessHeaders(tok, "tools/call", "regional"), "Mcp-Param-Region", "us-west1"),
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"regional","arguments":{"region":"eu-west1"},"ARGUMENTS":{"region":"us-west1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, 400, -32020},
		{"ARGUMENTS variant next to matching arguments", with(statelessHeaders(tok, "tools/call", "regional"), "Mcp-Param-Region", "us-west1"),
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"regional","arguments":{"region":"us-west1"},"ARGUMENTS":{"region":"eu-west1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, 400, -32020},
		{"unknown param header forwarded", with(statelessHeaders(tok, "tools/call", "echo"), "Mcp-Param-Other", "x"), callBody("echo", `{}`), 200, 0},
		{"unsupported version", with(bearer(tok), "MCP-Protocol-Version", "1999-01-01"), listBody, 400, -32022},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			r := tg.do(t, "POST", "/mcp", row.body, row.hdr)
			if r.status != row.status {
				t.Fatalf("status %d, want %d: %s", r.status, row.status, r.body)
			}
			if row.code != 0 {
				if code, _, _ := r.rpcError(t); code != row.code {
					t.Fatalf("code %d, want %d", code, row.code)
				}
			}
		})
	}
	if tg.up.lastHeader().Get("Mcp-Param-Other") != "x" {
		t.Fatal("unknown Mcp-Param-* header was not forwarded")
	}
	for _, m := range []string{"GET", "DELETE"} {
		r := tg.do(t, m, "/mcp", "", with(bearer(tok), "MCP-Protocol-Version", "2026-07-28", "Mcp-Session-Id", "x"))
		if r.status != http.StatusMethodNotAllowed {
			t.Fatalf("%s in 2026-07-28: %d, want 405", m, r.status)
		}
	}
}

func TestRateLimitPerSubject(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.RequestsPerSecond, c.Limits.Burst = 1, 2 })
	tok := tg.token(t, "alice", "mcp:read")
	var limited bool
	for range 5 {
		r := tg.do(t, "POST", "/mcp", listBody, bearer(tok))
		if r.status == http.StatusTooManyRequests {
			limited = true
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			if code, _, _ := r.rpcError(t); code != -42900 {
				t.Fatalf("code %d", code)
			}
		}
	}
	if !limited {
		t.Fatal("5 requests at burst 2 were never limited")
	}
	// Another subject has its own bucket.
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "bob", "mcp:read"))); r.status != 200 {
		t.Fatalf("bob limited by alice's bucket: %d", r.status)
	}
}

func TestCORSPreflightAndExposedHeaders(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.AllowedOrigins = []string{"https://app.example"} })
	r := tg.do(t, "OPTIONS", "/mcp", "", map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, mcp-param-region",
	})
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
	if !strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "mcp-param-region") {
		t.Fatalf("allow headers %q", r.header.Get("Access-Control-Allow-Headers"))
	}
	r = tg.do(t, "POST", "/mcp", listBody, map[string]string{"Origin": "https://app.example"})
	exp := r.header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"WWW-Authenticate", "Mcp-Session-Id", "Mcp-Protocol-Version"} {
		if !strings.Contains(exp, h) {
			t.Fatalf("expose headers %q lacks %s", exp, h)
		}
	}
}

func TestHealthReadyAndMetrics(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Metrics.ServeOnMain = true })
	if r := tg.do(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	tok := tg.token(t, "alice", "mcp:read")
	tg.do(t, "POST", "/mcp", listBody, bearer(tok))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := tg.do(t, "GET", "/readyz", "", nil)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d: %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tg.up.srv.Close()
	if r := tg.do(t, "GET", "/readyz", "", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the upstream down: %d", r.status)
	}
	r := tg.do(t, "GET", "/metrics", "", nil)
	if !strings.Contains(string(r.body), "mcpgate_requests_total") {
		t.Fatalf("metrics lack request counter: %.400s", r.body)
	}
	if strings.Contains(string(r.body), tok) || strings.Contains(string(r.body), "alice") {
		t.Fatal("metrics leak a token or subject")
	}
}

func TestReloadSwapsPolicyWithoutDroppingSessions(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	next := *tg.cfg
	next.Upstreams = append([]config.Upstream(nil), tg.cfg.Upstreams...)
	next.Upstreams[0].Policy.Tools = []config.Rule{{Match: "echo", Deny: true}}
	if err := tg.gw.Reload(t.Context(), &next); err != nil {
		t.Fatal(err)
	}
	call := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{}}}`
	if r := tg.do(t, "POST", "/mcp", call, with(bearer(tok), "Mcp-Session-Id", sid)); r.status != http.StatusForbidden {
		t.Fatalf("after reload echo is denied: %d", r.status)
	}
	if r := tg.do(t, "POST", "/mcp", listBody, with(bearer(tok), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("session survived reload: %d %s", r.status, r.body)
	}
	bad := next
	bad.Upstreams = nil
	if err := tg.gw.Reload(t.Context(), &bad); err == nil {
		t.Fatal("reload that removes upstreams must be refused")
	}
}

// TestRepeatedHeadersRefused: a header the gateway and the upstream could
// read differently when repeated (Go takes the first value, Node joins
// them) is refused before anything else happens.
func TestRepeatedHeadersRefused(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	for _, h := range []string{"Mcp-Session-Id", "MCP-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID"} {
		t.Run(h, func(t *testing.T) {
			before := tg.up.hits.Load()
			req, _ := http.NewRequest("POST", tg.url+"/mcp", strings.NewReader(listBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Add(h, "2025-11-25")
			req.Header.Add(h, "2025-06-18")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(b), "more than once") || !strings.Contains(string(b), `"jsonrpc":"2.0"`) {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if tg.up.hits.Load() != before {
				t.Fatal("reached the upstream")
			}
		})
	}
}

// TestUnreadableListReplyIsWithheld: a list reply the gateway cannot read
// unambiguously is replaced by an error instead of passing unfiltered.
func TestUnreadableListReplyIsWithheld(t *testing.T) {
	tg := startGateway(t, nil)
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"ambiguous"}}`, bearer(tg.token(t, "alice", "mcp:read")))
	if strings.Contains(string(r.body), "admin_delete") || !strings.Contains(string(r.body), "withheld") || !strings.Contains(string(r.body), `"id":4`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
