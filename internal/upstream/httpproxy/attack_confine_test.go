package httpproxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUpstreamHTMLIsNotRelayed (review, the gateway half of the broker's
// hole): an upstream is trusted less than the gateway's origin, which
// serves the built-in authorization server's pages and cookies; an HTML
// (or SVG, or untyped) answer through mcpgate serve would run there. It is
// replaced by a JSON-RPC error carrying the request id; an empty 202
// passes as its status; JSON passes with the confinement headers.
func TestUpstreamHTMLIsNotRelayed(t *testing.T) {
	page := `<!doctype html><script>fetch("/authorize")</script>`
	for name, c := range map[string]struct {
		status int
		ct     string
		body   string
		want   int
	}{
		"200 text/html":       {200, "text/html; charset=utf-8", page, 502},
		"404 text/html":       {404, "text/html", page, 404},
		"500 text/html":       {500, "text/html", page, 502},
		"200 image/svg+xml":   {200, "image/svg+xml", `<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>`, 502},
		"200 no Content-Type": {200, "", page, 502},
		"200 text/plain":      {200, "text/plain", `{"jsonrpc":"2.0","id":1,"result":{}}`, 502},
		"202 empty":           {202, "", "", 202},
		"200 json":            {200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{}}`, 200},
	} {
		t.Run(name, func(t *testing.T) {
			_, front := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if c.ct == "" {
					w.Header()["Content-Type"] = nil
				} else {
					w.Header().Set("Content-Type", c.ct)
				}
				w.Header().Set("Set-Cookie", "upstream=1; Path=/")
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}), Options{})
			resp, err := http.Post(front.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ct := resp.Header.Get("Content-Type")
			if resp.StatusCode != c.want || strings.Contains(string(b), "<script") || strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "image/") {
				t.Fatalf("%d %q %s", resp.StatusCode, ct, b)
			}
			if c.want != 200 && c.want != 202 && (!strings.HasPrefix(ct, "application/json") || !strings.Contains(string(b), `"id":1`) || !strings.Contains(string(b), "not an MCP answer")) {
				t.Fatalf("not a JSON-RPC error for the request: %q %s", ct, b)
			}
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") || resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("headers: %v", resp.Header)
			}
		})
	}
}
