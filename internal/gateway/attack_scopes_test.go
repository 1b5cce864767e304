package gateway

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Issue 12 item 3, scope minimisation. The texts
// (modelcontextprotocol/modelcontextprotocol at b0f60ba, 2026-08-22):
//
// docs/specification/2026-07-28/basic/authorization/index.mdx §Scope
// Selection Strategy: "MCP servers SHOULD include a scope parameter in the
// WWW-Authenticate header [...] to indicate the scopes required for
// accessing the resource. This provides clients with immediate guidance
// on the appropriate scopes to request during authorization, following
// the principle of least privilege and preventing clients from requesting
// excessive permissions." and "Clients MUST treat the scopes provided in
// the challenge as authoritative for the current operation."
//
// docs/docs/2026-07-28/tutorials/security/security_best_practices.mdx
// §Scope Minimization: "Minimal initial scope set [...] containing only
// low-risk discovery/read operations", "Incremental elevation via targeted
// WWW-Authenticate scope="..." challenges when privileged operations are
// first attempted", "Emit precise scope challenges; avoid returning the
// full catalog", "Log elevation events (scope requested, granted subset)
// with correlation IDs", and the three approaches: "Minimum approach:
// Include only the scopes required for the specific operation [...]
// Recommended approach: Include the scopes required for the current
// operation along with related scopes that commonly work together [...]
// Extended approach: Include the scopes required for the current
// operation, related scopes, and any other scopes the server anticipates
// the client may need in the near future."

// scopeConfig is the demo's shape: mcp:read for everything, mcp:admin for
// admin_* tools, both in scopes_supported, plus a basic scope no rule uses
// and a rule scope the operator does not publish.
func scopeConfig(mode string) func(*config.Gateway) {
	return func(c *config.Gateway) {
		u := &c.Upstreams[0]
		u.ScopesSupported = []string{"mcp:read", "mcp:admin", "mcp:notes"}
		u.ChallengeScopes = mode
		u.Policy.Tools = []config.Rule{{Match: "admin_*", Scopes: []string{"mcp:admin"}}, {Match: "vault_*", Scopes: []string{"mcp:vault"}}}
	}
}

var scopeParam = regexp.MustCompile(`scope="([^"]*)"`)

// challengedScopes is the scope parameter of the Bearer challenge ("-"
// when there is none).
func challengedScopes(t *testing.T, r reply) string {
	t.Helper()
	for _, ch := range r.header.Values("WWW-Authenticate") {
		if strings.HasPrefix(ch, "Bearer ") {
			if m := scopeParam.FindStringSubmatch(ch); m != nil {
				return m[1]
			}
			return "-"
		}
	}
	t.Fatalf("no Bearer challenge: %d %v", r.status, r.header)
	return ""
}

func TestAttackChallengeScopes(t *testing.T) {
	b64 := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	op := func(method, name string) map[string]string {
		h := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
		if name != "" {
			h["Mcp-Name"] = name
		}
		return h
	}
	rows := []struct {
		mode, name string
		hdr        map[string]string
		want       string
	}{
		// recommended (the default): required + basic scopes, never the
		// privileged mcp:admin up front (the old challenge named every
		// scope in scopes_supported).
		{"", "no token, operation unknown", nil, "mcp:notes mcp:read"},
		{"", "2025 request naming an admin tool in headers", map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "admin_delete"}, "mcp:notes mcp:read"},
		{"", "2026 list", op("tools/list", ""), "mcp:notes mcp:read"},
		{"", "2026 call of a basic tool", op("tools/call", "echo"), "mcp:notes mcp:read"},
		{"", "2026 call of an admin tool", op("tools/call", "admin_delete"), "mcp:admin mcp:notes mcp:read"},
		{"", "2026 admin tool, base64 name", op("tools/call", b64("admin_delete")), "mcp:admin mcp:notes mcp:read"},
		{"", "2026 admin tool, malformed base64", op("tools/call", "=?base64?!!!?="), "mcp:notes mcp:read"},
		{"", "2026 admin tool, overlong name", op("tools/call", "admin_"+strings.Repeat("x", 2000)), "mcp:notes mcp:read"},
		{"", "2026 unpublished rule scope stays unnamed", op("tools/call", "vault_open"), "mcp:notes mcp:read"},
		{"", "2026 name on a method without one", op("tools/list", "admin_delete"), "mcp:notes mcp:read"},
		{"", "2099 revision naming an admin tool", with(op("tools/call", "admin_delete"), "MCP-Protocol-Version", "2099-01-01"), "mcp:notes mcp:read"},
		{"recommended", "explicit recommended", nil, "mcp:notes mcp:read"},
		{"minimum", "minimum: required only", nil, "mcp:read"},
		{"minimum", "minimum: the operation's", op("tools/call", "admin_delete"), "mcp:admin mcp:read"},
		{"extended", "extended: the full catalog", nil, "mcp:admin mcp:notes mcp:read"},
	}
	gws := map[string]*testGateway{}
	for _, r := range rows {
		if gws[r.mode] == nil {
			gws[r.mode] = startGateway(t, scopeConfig(r.mode))
		}
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			tg := gws[r.mode]
			got := tg.do(t, "POST", "/mcp", listBody, r.hdr)
			if got.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", got.status)
			}
			if s := challengedScopes(t, got); s != r.want {
				t.Fatalf("401 challenge names %q, want %q", s, r.want)
			}
		})
	}
	// An invalid token gets the same minimal set, and so does a stream.
	tg := gws[""]
	if s := challengedScopes(t, tg.do(t, "POST", "/mcp", listBody, bearer("not-a-jwt"))); s != "mcp:notes mcp:read" {
		t.Fatalf("invalid token: challenge names %q", s)
	}
	if s := challengedScopes(t, tg.do(t, "GET", "/mcp", "", map[string]string{"Mcp-Session-Id": "x", "MCP-Protocol-Version": "2025-11-25"})); s != "mcp:notes mcp:read" {
		t.Fatalf("GET stream: challenge names %q", s)
	}
}

// TestAttackStepUpScopes: privileged scopes come through the 403
// insufficient_scope challenge, all the operation needs at once.
func TestAttackStepUpScopes(t *testing.T) {
	for _, c := range []struct{ mode, want string }{
		{"minimum", "mcp:admin mcp:read"},
		{"recommended", "mcp:admin mcp:notes mcp:read"},
		{"extended", "mcp:admin mcp:notes mcp:read"},
	} {
		tg := startGateway(t, scopeConfig(c.mode))
		tok := tg.token(t, "alice", "mcp:read")
		r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin_delete","arguments":{}}}`, bearer(tok))
		if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Fatalf("%s: %d %v", c.mode, r.status, r.header)
		}
		if s := challengedScopes(t, r); s != c.want {
			t.Fatalf("%s: 403 challenge names %q, want %q", c.mode, s, c.want)
		}
	}
}

// TestAttackElevationAudit: the step-up challenge and the later grant are
// audit records correlated by request id; another subject's token, or a
// token still without the scope, is no grant.
func TestAttackElevationAudit(t *testing.T) {
	tg := startGateway(t, scopeConfig(""))
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin_delete","arguments":{}}}`
	if r := tg.do(t, "POST", "/mcp", call, bearer(tg.token(t, "alice", "mcp:read"))); r.status != http.StatusForbidden {
		t.Fatalf("status %d", r.status)
	}
	challenge := auditRecords(t, tg, "scope_challenge")
	if len(challenge) != 1 || challenge[0].Subject != "alice" || challenge[0].RequestID == "" ||
		strings.Join(challenge[0].Scopes, " ") != "mcp:admin mcp:notes mcp:read" || challenge[0].Name != "admin_delete" {
		t.Fatalf("scope_challenge records: %+v", challenge)
	}
	// Neighbours that are no grant: another subject with the scope, alice
	// again without it.
	tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "mallory", "mcp:read mcp:admin")))
	tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "alice", "mcp:read")))
	if g := auditRecords(t, tg, "scope_granted"); len(g) != 0 {
		t.Fatalf("granted without alice's elevated token: %+v", g)
	}
	// alice comes back with mcp:admin (the AS granted a subset: no
	// mcp:notes).
	if r := tg.do(t, "POST", "/mcp", call, bearer(tg.token(t, "alice", "mcp:read mcp:admin"))); r.status != http.StatusOK {
		t.Fatalf("elevated call: %d %s", r.status, r.body)
	}
	granted := auditRecords(t, tg, "scope_granted")
	if len(granted) != 1 || granted[0].Subject != "alice" || granted[0].ChallengeRequestID != challenge[0].RequestID ||
		granted[0].RequestID == challenge[0].RequestID || strings.Join(granted[0].Scopes, " ") != "mcp:admin" {
		t.Fatalf("scope_granted records: %+v (challenge %s)", granted, challenge[0].RequestID)
	}
	// Once: the grant is not reported again.
	tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "alice", "mcp:read mcp:admin")))
	if g := auditRecords(t, tg, "scope_granted"); len(g) != 1 {
		t.Fatalf("grant reported %d times", len(g))
	}
}

func auditRecords(t *testing.T, tg *testGateway, decision string) []auditRecord {
	t.Helper()
	var out []auditRecord
	sc := bufio.NewScanner(strings.NewReader(tg.audit.String()))
	for sc.Scan() {
		var rec auditRecord
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Decision == decision {
			out = append(out, rec)
		}
	}
	return out
}
