package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// TestRefuse: every refusal class goes through refuse — the decision
// label, the audit records (none for a refusal that is not a denial), the
// status and a JSON-RPC error carrying the refused request's id.
func TestRefuse(t *testing.T) {
	tg := startGateway(t, nil)
	member := &mcp.Envelope{ID: json.RawMessage(`"m"`), Method: "tools/call", Name: "admin_delete"}
	for _, c := range []struct {
		name   string
		do     func(x *exchange)
		dec    string
		status int
		code   int
		id     string
		audit  []string // decision/reason/method/name/status of each record
		header string   // a header the refusal carries
	}{
		{"protocol", func(x *exchange) { x.refuse(decProtocol, mismatch("Mcp-Method says x")) },
			decProtocol, 400, mcp.CodeHeaderMismatch, "7", nil, ""},
		{"protocol, notification in a batch", func(x *exchange) {
			x.refuse(decProtocol, &failure{status: 400, code: mcp.CodeInvalidParams, msg: "bad", id: ownID(&mcp.Envelope{Method: "subscriptions/listen"})})
		}, decProtocol, 400, mcp.CodeInvalidParams, "null", nil, ""},
		{"body", func(x *exchange) { x.refuse(decBody, bodyFailure(errBodyTooLarge, 10, x.w)) },
			decBody, 413, mcp.CodeInvalidRequest, "7", nil, ""},
		{"error (media type)", func(x *exchange) {
			x.refuse(decError, &failure{status: 415, code: mcp.CodeInvalidRequest, msg: "Content-Type must be application/json"})
		}, decError, 415, mcp.CodeInvalidRequest, "7", nil, ""},
		{"unauthenticated", func(x *exchange) { x.unauthenticated(errors.New("no token")) },
			decUnauthenticated, 401, mcp.CodeFor(mcp.EraSession, mcp.CodeUnauthorized), "7", []string{"deny/no_token///401"}, "WWW-Authenticate"},
		{"unauthenticated, verifier's status", func(x *exchange) {
			x.unauthenticated(&resource.Error{Status: 400, Code: "invalid_request", Description: "two tokens"})
		}, decUnauthenticated, 400, mcp.CodeInvalidRequest, "7", []string{"deny/invalid_request///400"}, "WWW-Authenticate"},
		{"rate_limited (replay share)", func(x *exchange) { x.replayRefused(dpop.ErrReplayShareFull) },
			decRateLimited, 429, mcp.CodeRateLimited, "7", []string{"deny/dpop_replay_share_full///429"}, "Retry-After"},
		{"busy (replay store)", func(x *exchange) { x.replayRefused(dpop.ErrReplayFull) },
			decBusy, 503, mcp.CodeInternalError, "7", []string{"deny/dpop_replay_full///503"}, "Retry-After"},
		{"deny, batch member", func(x *exchange) {
			x.forbid(policy.Decision{Reason: "rule admin"}, member, member.Method, member.Name)
		}, decDeny, 403, mcp.CodeFor(mcp.EraSession, mcp.CodeForbidden), `"m"`, []string{"deny/rule admin/tools/call/admin_delete/403"}, ""},
		{"deny with a step-up challenge", func(x *exchange) {
			x.forbid(policy.Decision{Reason: "needs admin", NeedScopes: []string{"mcp:admin"}}, member, member.Method, member.Name)
		}, decDeny, 403, mcp.CodeFor(mcp.EraSession, mcp.CodeForbidden), `"m"`,
			[]string{"deny/needs admin/tools/call/admin_delete/403", "scope_challenge/insufficient_scope/tools/call/admin_delete/403"}, "WWW-Authenticate"},
		{"deny audited by the caller (tasks)", func(x *exchange) { x.deny(policy.Decision{Reason: "task tool"}, &mcp.Envelope{Method: "tasks/get"}) },
			decDeny, 403, mcp.CodeFor(mcp.EraSession, mcp.CodeForbidden), "7", nil, ""},
		{"session", func(x *exchange) {
			x.refuse(decSession, x.denied(&failure{status: 404, code: mcp.CodeInvalidRequest, msg: "session not found"}, "tools/list", "", "session id not owned by caller"))
		}, decSession, 404, mcp.CodeInvalidRequest, "7", []string{"deny/session id not owned by caller/tools/list//404"}, ""},
		{"session_limit", func(x *exchange) {
			x.refuse(decSessionLimit, x.denied(&failure{status: 429, code: mcp.AppCode(429), msg: "too many sessions"}, "initialize", "", "session limit"))
		}, decSessionLimit, 429, mcp.AppCode(429), "7", []string{"deny/session limit/initialize//429"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Header.Set(mcp.HeaderProtocolVersion, "2025-11-25")
			x := &exchange{m: tg.gw.mounts[0], w: &recorder{ResponseWriter: rec}, r: r, id: "req-1", dec: decError,
				rpcID: json.RawMessage(`7`), p: &resource.Principal{Issuer: tg.idp.Issuer, Subject: "alice", Scopes: []string{"mcp:read"}}}
			before := tg.audit.Len()
			c.do(x)
			if x.dec != c.dec {
				t.Errorf("decision label %q, want %q", x.dec, c.dec)
			}
			if rec.Code != c.status {
				t.Errorf("status %d, want %d", rec.Code, c.status)
			}
			if c.header != "" && rec.Header().Get(c.header) == "" {
				t.Errorf("no %s header", c.header)
			}
			var body struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.JSONRPC != "2.0" || body.Error.Message == "" {
				t.Fatalf("not a JSON-RPC error: %s", rec.Body)
			}
			if string(body.ID) != c.id || body.Error.Code != c.code {
				t.Errorf("id %s code %d, want %s %d", body.ID, body.Error.Code, c.id, c.code)
			}
			var got []string
			for _, line := range bytes.Split(bytes.TrimSpace(tg.audit.Bytes()[before:]), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var a auditRecord
				if err := json.Unmarshal(line, &a); err != nil {
					t.Fatal(err)
				}
				if a.RequestID != "req-1" || a.Subject != "alice" {
					t.Errorf("audit record of another request or caller: %s", line)
				}
				got = append(got, strings.Join([]string{a.Decision, a.Reason, a.Method, a.Name, strconv.Itoa(a.Status)}, "/"))
			}
			if strings.Join(got, "\n") != strings.Join(c.audit, "\n") {
				t.Errorf("audit\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.audit, "\n"))
			}
		})
	}
}
