package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

const discoverModern = `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"modern","version":"9"}}}`

// TestHeaderMismatchRetry: a 2026-07-28 server refusing a tools/call with
// HeaderMismatch (-32020) because the bridge did not know the tool's
// x-mcp-header yet: the bridge re-reads tools/list, retries once with the
// Mcp-Param header, and the client gets the result. A second mismatch is
// the client's answer (one retry). A tools/list answer loses the tools
// whose x-mcp-header annotation is invalid.
func TestHeaderMismatchRetry(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := start(t, func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		seen = append(seen, m.Method+" "+string(m.ID)+" "+r.Header.Get("Mcp-Param-Region"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case m.Method == "server/discover":
			fmt.Fprintf(w, discoverModern, m.ID)
		case m.Method == "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[`+
				`{"name":"q","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}},`+
				`{"name":"bad","inputSchema":{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"Bad Name"}}}}]}}`, m.ID)
		case m.Method == "tools/call" && (m.Params.Name == "stubborn" || r.Header.Get("Mcp-Param-Region") != "eu"):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Param-Region does not match"}}`)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ok"}]}}`, m.ID)
		}
	})
	h.send(initReq)
	h.answer(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"q","arguments":{"region":"eu"}}}`)
	if m := h.answer(2); !strings.Contains(fmt.Sprint(m["result"]), "ok") {
		t.Fatalf("after the retry: %v", m)
	}
	mu.Lock()
	got := strings.Join(seen, "; ")
	mu.Unlock()
	if want := `server/discover "mcpgate-discover" ; tools/call 2 ; tools/list "mcpgate-tools-refresh" ; tools/call 2 eu`; got != want {
		t.Fatalf("the server saw %s, want %s", got, want)
	}
	h.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"stubborn","arguments":{"region":"eu"}}}`)
	if m := h.answer(3); errCode(m) != mcp.CodeHeaderMismatch {
		t.Fatalf("a second mismatch: %v", m)
	}
	h.send(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	m := h.answer(4)
	if s := fmt.Sprint(m["result"]); !strings.Contains(s, "name:q") || strings.Contains(s, "name:bad") {
		t.Fatalf("tools/list: %v", m)
	}
}

// TestDescribe: every failure becomes a JSON-RPC error that says what
// happened and what to do, with the code of the stdio client's era.
func TestDescribe(t *testing.T) {
	timeout := &netTimeout{}
	for _, row := range []struct {
		err  error
		era  mcp.Era
		code int
		msg  string
	}{
		{&mcpclient.RPCError{Code: -32602, Message: "bad args"}, mcp.EraSession, -32602, "bad args"},
		{&mcpclient.AuthError{Op: "tools/call", Err: errors.New("not logged in to http://x; run mcpgate login"), LoginRequired: true}, mcp.EraSession, mcp.CodeFor(mcp.EraSession, mcp.CodeUnauthorized), "authentication needed"},
		{fmt.Errorf("initialize: %w", &mcpclient.AuthError{Op: "initialize", Err: errors.New("no credential"), LoginRequired: true}), mcp.EraStateless, mcp.CodeFor(mcp.EraStateless, mcp.CodeUnauthorized), "authentication needed"},
		// The error's words do not decide: only the typed login-required
		// error is "authentication needed" (it used to match "mcpgate login"
		// in any message).
		{errors.New("dial tcp: refused; run mcpgate login later"), mcp.EraSession, mcp.CodeUpstream, "cannot reach"},
		{&mcpclient.HTTPError{Status: 401}, mcp.EraStateless, mcp.CodeFor(mcp.EraStateless, mcp.CodeUnauthorized), "run mcpgate login"},
		{&mcpclient.HTTPError{Status: 403}, mcp.EraSession, mcp.CodeFor(mcp.EraSession, mcp.CodeForbidden), "check --scope"},
		{&mcpclient.HTTPError{Status: 503}, mcp.EraSession, mcp.CodeUpstream, "failed"},
		{&mcpclient.HTTPError{Status: 400}, mcp.EraSession, mcp.CodeUpstream, "refused the request"},
		{fmt.Errorf("tools/call: %w", context.DeadlineExceeded), mcp.EraSession, mcp.CodeUpstreamTimeout, "did not answer in time"},
		{timeout, mcp.EraSession, mcp.CodeUpstreamTimeout, "did not answer in time"},
		{context.Canceled, mcp.EraSession, mcp.CodeUnavailable, "shutting down"},
		{errors.New("dial tcp: connection refused"), mcp.EraSession, mcp.CodeUpstream, "cannot reach"},
	} {
		code, msg := describe(row.err, row.era)
		if code != row.code || !strings.Contains(msg, row.msg) {
			t.Errorf("%v: %d %q, want %d and %q", row.err, code, msg, row.code, row.msg)
		}
	}
}

type netTimeout struct{}

func (*netTimeout) Error() string   { return "i/o timeout" }
func (*netTimeout) Timeout() bool   { return true }
func (*netTimeout) Temporary() bool { return false }
