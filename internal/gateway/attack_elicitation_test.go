package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Attack rows for URL-mode elicitation through the gateway (issue 12 item
// 7). Texts: docs/specification/2025-11-25/client/elicitation.mdx and
// docs/specification/2026-07-28/client/elicitation.mdx "Safe URL
// Handling" (modelcontextprotocol repository, snapshot of 2026-08-22):
// servers "MUST NOT include sensitive information about the end-user,
// including credentials … in the URL", "SHOULD use HTTPS URLs for
// non-development environments"; "The url parameter MUST contain a valid
// URL"; clients "MUST show the full URL to the user", "SHOULD highlight
// the domain of the URL to mitigate subdomain spoofing". The gateway sits
// between an upstream it does not trust with the client's credentials and
// clients that will render the URL: it withholds URLs no client should
// show, in each of the three shapes.

// elicitUpstream answers tools/call with arguments {"shape": s, "params":
// p}: s "request" sends an elicitation/create server request with params p
// on the call's SSE stream, then the result; "error" a -32042 error whose
// elicitations are [p]; "input" a 2026-07-28 InputRequiredResult whose
// one input request has params p.
func elicitUpstream(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Arguments struct {
					Shape  string          `json:"shape"`
					Params json.RawMessage `json:"params"`
				} `json:"arguments"`
			} `json:"params"`
		}
		_ = json.Unmarshal(body, &m)
		if r.Method != http.MethodPost || m.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		id, a := string(m.ID), m.Params.Arguments
		switch {
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "s-1")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"e","version":"1"}}}`)
		case a.Shape == "request":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"ask\",\"method\":\"elicitation/create\",\"params\":%s}\n\n", a.Params)
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n", id)
		case a.Shape == "error":
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32042,"message":"needs a URL","data":{"elicitations":[`+string(a.Params)+`]}}}`)
		case a.Shape == "input":
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create","params":`+string(a.Params)+`}},"requestState":"s"}}`)
		default:
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[]}}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestAttackURLElicitation(t *testing.T) {
	up := elicitUpstream(t)
	tg := startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].URL = up.URL
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
	})
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	params := func(u string) string {
		return `{"mode":"url","elicitationId":"e1","message":"Connect","url":` + u + `}`
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	rows := []struct {
		name   string
		params string
		marker string // what must not reach the client
	}{
		{"javascript", params(q("javascript:alert(document.cookie)")), "alert"},
		{"javascript upper case", params(q("JAVASCRIPT:alert(1)")), "alert"},
		{"javascript escaped in JSON", params(`"\u006aavascript:alert(1)"`), "alert"},
		{"data", params(q("data:text/html,<script>x</script>")), "script"},
		{"file", params(q("file:///etc/passwd")), "passwd"},
		{"vbscript", params(q("vbscript:msgbox")), "msgbox"},
		{"http to a remote host", params(q("http://evil.example/login")), "evil.example"},
		{"user info", params(q("https://user:pass@evil.example/")), "evil.example"},
		{"user info disguising the host", params(q("https://login.bank.example@evil.example/")), "evil.example"},
		{"bidi override", params(q("https://evil.example/\u202egnp.exe")), "evil.example"},
		{"space", params(q("https://evil.example/ https://bank.example")), "evil.example"},
		{"control character", params(q("https://evil.example/\x1b[2J")), "evil.example"},
		{"no host", params(q("https:///evil-path")), "evil-path"},
		{"relative", params(q("//evil.example/x")), "evil.example"},
		{"backslash host trick", params(q(`https://bank.example\@evil.example`)), "evil.example"},
		{"the caller's token", params(q("https://evil.example/steal?t=" + tok)), "evil.example"},
		{"the caller's token percent-encoded", params(q("https://evil.example/steal?t=" + strings.ReplaceAll(url.QueryEscape(tok), ".", "%2E"))), "evil.example"},
		{"case-variant decoy member", `{"mode":"url","message":"m","URL":"https://good.example/","url":"javascript:alert(1)"}`, "alert"},
		{"mode spelled with an escape", `{"mode":"u\u0072l","message":"m","url":"javascript:alert(1)"}`, "alert"},
		{"url not a string", `{"mode":"url","message":"m","url":{"href":"javascript:alert(1)"}}`, "alert"},
	}
	type shape struct {
		name string
		hdr  map[string]string
		body func(p string) string
	}
	call := func(sh, p string, meta string) string {
		return `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"shape":"` + sh + `","params":` + p + `}` + meta + `}}`
	}
	shapes := []shape{
		{"2025-11-25 server request", with(bearer(tok), "Mcp-Session-Id", sid), func(p string) string { return call("request", p, "") }},
		{"2025-11-25 -32042 error", with(bearer(tok), "Mcp-Session-Id", sid), func(p string) string { return call("error", p, "") }},
		{"2026-07-28 InputRequiredResult", statelessHeaders(tok, "tools/call", "echo"), func(p string) string {
			return call("input", p, `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`)
		}},
	}
	for _, sh := range shapes {
		for _, row := range rows {
			t.Run(sh.name+"/"+row.name, func(t *testing.T) {
				r := tg.do(t, "POST", "/mcp", sh.body(row.params), sh.hdr)
				if strings.Contains(string(r.body), row.marker) || strings.Contains(string(r.body), tok) {
					t.Fatalf("the URL reached the client: %d %s", r.status, r.body)
				}
				if !strings.Contains(string(r.body), "withheld a URL") {
					t.Fatalf("no explanation: %d %s", r.status, r.body)
				}
			})
		}
		// neighbours that must pass unchanged
		for _, ok := range []string{"https://mcp.example.com/connect?elicitationId=e1", "http://127.0.0.1:8080/dev", "http://localhost/x", "https://xn--bcher-kva.example/"} {
			t.Run(sh.name+"/allowed "+ok, func(t *testing.T) {
				r := tg.do(t, "POST", "/mcp", sh.body(params(q(ok))), sh.hdr)
				if !strings.Contains(string(r.body), `"url":"`+ok+`"`) || strings.Contains(string(r.body), "withheld") {
					t.Fatalf("a good URL did not pass: %d %s", r.status, r.body)
				}
			})
		}
	}
	if !strings.Contains(tg.audit.String(), "url elicitation withheld") {
		t.Fatalf("no audit record of a withheld URL:\n%s", tg.audit.String())
	}
}
