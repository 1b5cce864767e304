package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// cacheUpstream answers every list with cacheScope "public" (and other
// hint variants), as a server whose lists are the same for all users.
func cacheUpstream(t *testing.T, result func(method, body string) string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(b, &m)
		if m.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":`+result(m.Method, string(b))+`}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func statelessList(method, cursor string) string {
	c := ""
	if cursor != "" {
		c = `"cursor":"` + cursor + `",`
	}
	return `{"jsonrpc":"2.0","id":2,"method":"` + method + `","params":{` + c + `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
}

func resultOf(t *testing.T, body []byte) map[string]json.RawMessage {
	t.Helper()
	var m struct {
		Result map[string]json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.Result == nil {
		t.Fatalf("no result: %s", body)
	}
	return m.Result
}

// TestCacheFilteredListsPrivate: "\"private\" is appropriate for ...
// filtered list results that vary per user" and "Caches MUST NOT be shared
// across authorization contexts" (2026-07-28 server/utilities/caching
// §Cache Scope Field); "Servers MUST apply the same cacheScope to all
// response pages for a given list request" (§Interaction with Pagination).
// The gateway filters every list for its caller, so whatever the upstream
// said ("public", absent, a case variant), every page it forwards is
// "private": a shared cache must never serve one caller's list to another.
// The old gateway passed the upstream's "public" through.
func TestCacheFilteredListsPrivate(t *testing.T) {
	url := cacheUpstream(t, func(method, body string) string {
		next := `,"nextCursor":"p2"`
		if strings.Contains(body, `"cursor":"p2"`) {
			next = ""
		}
		switch method {
		case "tools/list":
			if strings.Contains(body, `"cursor":"p2"`) {
				// second page: no hint at all, and a case variant
				return `{"tools":[{"name":"echo2","inputSchema":{"type":"object"}}],"ttlMs":60000,"CacheScope":"public"}`
			}
			return `{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"admin_delete","inputSchema":{"type":"object"}}],"ttlMs":60000,"cacheScope":"public"` + next + `}`
		case "prompts/list":
			return `{"prompts":[{"name":"p"}],"ttlMs":1000,"cacheScope":"public","cacheScope":"public"}`
		case "resources/list":
			return `{"resources":[{"uri":"file:///a","name":"a"}],"ttlMs":1000,"cacheScope":"public"}`
		case "resources/templates/list":
			return `{"resourceTemplates":[{"uriTemplate":"file:///{x}","name":"x"}],"ttlMs":1000}`
		case "resources/read":
			return `{"contents":[{"uri":"file:///a","text":"a"}],"ttlMs":1000,"cacheScope":"public"}`
		}
		return `{}`
	})
	tg := startGateway(t, func(c *config.Gateway) { c.Upstreams[0].URL = url })
	tok := tg.token(t, "alice", "mcp:read")
	rows := []struct{ method, cursor string }{
		{"tools/list", ""}, {"tools/list", "p2"}, {"prompts/list", ""}, {"resources/list", ""}, {"resources/templates/list", ""},
	}
	for _, row := range rows {
		r := tg.do(t, "POST", "/mcp", statelessList(row.method, row.cursor), statelessHeaders(tok, row.method, ""))
		res := resultOf(t, r.body)
		if string(res["cacheScope"]) != `"private"` {
			t.Fatalf("%s cursor %q: cacheScope %s, want \"private\": %s", row.method, row.cursor, res["cacheScope"], r.body)
		}
		if strings.Contains(string(r.body), `"public"`) {
			t.Fatalf("%s cursor %q: a public scope survived: %s", row.method, row.cursor, r.body)
		}
		if row.method == "tools/list" && row.cursor == "" && (strings.Contains(string(r.body), "admin_delete") || string(res["ttlMs"]) != "60000" || string(res["nextCursor"]) != `"p2"`) {
			t.Fatalf("tools/list: filter or other members wrong: %s", r.body)
		}
	}
	// A result that is not a list keeps the upstream's hints.
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		statelessHeaders(tok, "resources/read", "file:///a"))
	if res := resultOf(t, r.body); string(res["cacheScope"]) != `"public"` {
		t.Fatalf("resources/read: %s", r.body)
	}
}

// TestCacheRetriesNotCacheable: "Results produced by retrying a request
// through the multi round-trip requests mechanism—that is, requests
// carrying inputResponses or requestState—MUST NOT be cached" (§Cache
// Key), and "Interim results with resultType: \"input_required\" ... are
// not cacheable and carry no caching hints" (§Cacheable Results).
func TestCacheRetriesNotCacheable(t *testing.T) {
	url := cacheUpstream(t, func(method, body string) string {
		if method == "resources/read" && !strings.Contains(body, "requestState") && !strings.Contains(body, "inputResponses") {
			return `{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create","params":{}}},"requestState":"st","ttlMs":5000,"cacheScope":"public"}`
		}
		return `{"resultType":"complete","contents":[{"uri":"file:///a","text":"a"}],"ttlMs":5000,"cacheScope":"public"}`
	})
	tg := startGateway(t, func(c *config.Gateway) { c.Upstreams[0].URL = url })
	tok := tg.token(t, "alice", "mcp:read")
	hdr := statelessHeaders(tok, "resources/read", "file:///a")
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, hdr)
	res := resultOf(t, r.body)
	if _, ok := res["ttlMs"]; ok {
		t.Fatalf("input_required result carries ttlMs: %s", r.body)
	}
	if _, ok := res["cacheScope"]; ok {
		t.Fatalf("input_required result carries cacheScope: %s", r.body)
	}
	if string(res["requestState"]) != `"st"` {
		t.Fatalf("input_required result lost requestState: %s", r.body)
	}
	for _, extra := range []string{`"requestState":"st"`, `"inputResponses":{"k":{"action":"accept"}}`, `"inputResponses":{"k":{}},"requestState":"st"`} {
		r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a",`+extra+`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, hdr)
		res := resultOf(t, r.body)
		if string(res["ttlMs"]) != "0" || string(res["cacheScope"]) != `"private"` {
			t.Fatalf("retry with %s: ttlMs %s cacheScope %s, want 0 and \"private\": %s", extra, res["ttlMs"], res["cacheScope"], r.body)
		}
	}
	// A member that only looks like requestState is no retry: the
	// complete result keeps the upstream's hints.
	r = tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a","requestStateX":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, hdr)
	if res := resultOf(t, r.body); string(res["ttlMs"]) != "5000" || string(res["cacheScope"]) != `"public"` {
		t.Fatalf("not a retry: %s", r.body)
	}
}
