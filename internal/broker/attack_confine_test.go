package broker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// Hole (review of the running broker): a browser's top-level GET to a
// remote's mount was forwarded with that remote's credential and the
// remote's text/html answer passed through unchanged, so the remote's
// script ran as the broker's origin and could call the other remotes with
// their credentials. An MCP endpoint's answer is never a document.

const evilPage = `<!doctype html><script>fetch("/gh/mcp",{method:"POST",body:"{}"})</script>`

// remoteSeen records what one fake remote received.
type remoteSeen struct {
	mu      sync.Mutex // guards headers
	headers []http.Header
}

func (s *remoteSeen) add(h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headers = append(s.headers, h.Clone())
}

func (s *remoteSeen) all() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// brokerBefore is a broker (no local token) in front of one logged-in
// remote answering with h.
func brokerBefore(t *testing.T, h http.HandlerFunc) (*Broker, *remoteSeen) {
	t.Helper()
	seen := &remoteSeen{}
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Header)
		h(w, r)
	}))
	t.Cleanup(remote.Close)
	u := remote.URL + "/mcp"
	store := vault.NewMemory()
	rec := oauth.Record{Profile: "default", Server: u, Resource: u, Issuer: "https://as.example",
		Client: oauth.Client{ID: "c"}, Token: oauth.Token{AccessToken: "remote-token", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}}
	raw, _ := json.Marshal(rec)
	key := oauth.TokenKey("default", rec.Issuer, "c", u)
	store.Put(key, raw)
	store.Put(oauth.ServerKey("default", u), []byte(key))
	e := oauth.NewEngine(oauth.NewGuard(u, false, false), nil, nil)
	cb, _ := oauth.ExternalListener(CallbackURI(addr, ""))
	s := oauth.NewCredential(e, store, oauth.Config{ServerURL: u, NonInteractive: true, DPoP: "off", Callback: cb})
	b, err := New(Options{Remotes: []*Remote{{URL: u, Session: s, Callback: cb}}, HTTP: remote.Client(), Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	return b, seen
}

// assertNotADocument: what a browser would get cannot render or run.
func assertNotADocument(t *testing.T, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	ct := w.Header().Get("Content-Type")
	if !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "text/event-stream") && !strings.HasPrefix(ct, "text/plain") &&
		(ct != "application/octet-stream" || w.Body.Len() > 0) {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: no nosniff", what)
	}
	if c := w.Header().Values("Set-Cookie"); len(c) > 0 {
		t.Errorf("%s: the remote set a cookie on the broker's origin: %v", what, c)
	}
	if strings.Contains(w.Body.String(), "<script") {
		t.Errorf("%s: the remote's script reached the browser: %s", what, w.Body)
	}
}

// htmlRemote answers every request with an HTML page, a cookie and a 200.
func htmlRemote(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Set-Cookie", "evil=1; Path=/")
	w.Write([]byte(evilPage))
}

// TestBrokerNavigationIsRefused: a browser navigating to an MCP mount (a
// link, location.href, an iframe) gets a JSON-RPC error and the remote is
// never asked: the broker injects credentials only for fetches.
func TestBrokerNavigationIsRefused(t *testing.T) {
	b, seen := brokerBefore(t, htmlRemote)
	chrome := map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "cross-site"}
	iframe := map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
	object := map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "object"}
	script := map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script", "Sec-Fetch-Site": "cross-site"}
	old := map[string]string{"Accept": "text/html,application/xhtml+xml"} // a browser without Fetch Metadata
	for name, h := range map[string]map[string]string{"document": chrome, "iframe": iframe, "object": object, "script": script, "no fetch metadata": old} {
		for _, m := range []string{"GET", "POST"} {
			w := do(b, m, "/mcp", h, call)
			assertNotADocument(t, name+" "+m, w)
			var msg struct{ Error *struct{ Message string } }
			if w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &msg) != nil || msg.Error == nil ||
				!strings.Contains(msg.Error.Message, "navigat") {
				t.Errorf("%s %s: %d %s", name, m, w.Code, w.Body)
			}
		}
	}
	if n := len(seen.all()); n != 0 {
		t.Fatalf("%d navigations reached the remote with its credential", n)
	}
}

// TestBrokerRemoteHTMLIsNotForwarded: an MCP client's fetch whose remote
// answers HTML (any status, or no Content-Type at all, which Go's server
// would sniff as text/html) gets a JSON-RPC error, never the page.
func TestBrokerRemoteHTMLIsNotForwarded(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"200 text/html": htmlRemote,
		"500 text/html": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			w.Write([]byte(evilPage))
		},
		"404 text/html": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(404)
			w.Write([]byte(evilPage))
		},
		"200 no Content-Type": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing on the remote's side
			w.Write([]byte(evilPage))
		},
		"200 image/svg+xml": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Write([]byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`))
		},
		"202 with a body": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(202)
			w.Write([]byte(evilPage))
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			b, _ := brokerBefore(t, h)
			for _, m := range []string{"POST", "GET", "DELETE"} {
				w := do(b, m, "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}, call)
				assertNotADocument(t, m, w)
				if m == "POST" && w.Code != 202 && !strings.Contains(w.Body.String(), `"id":5`) {
					t.Errorf("POST: not a JSON-RPC error for the request: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// TestBrokerAnswersAreConfined: even a proper JSON or event-stream answer
// carries the confinement headers, and the remote's cookies stay out.
func TestBrokerAnswersAreConfined(t *testing.T) {
	b, _ := brokerBefore(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "evil=1; Path=/")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":5,"result":{}}`))
	})
	w := do(b, "POST", "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}, call)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	assertNotADocument(t, "json", w)
}

// TestBrokerSendsMCPAccept: the remote is asked for what an MCP endpoint
// answers, whatever Accept the local client sent.
func TestBrokerSendsMCPAccept(t *testing.T) {
	b, seen := brokerBefore(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) })
	do(b, "POST", "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "*/*"}, call)
	do(b, "GET", "/mcp", map[string]string{"Accept": "*/*"}, "")
	got := seen.all()
	if len(got) != 2 || got[0].Get("Accept") != "application/json, text/event-stream" || got[1].Get("Accept") != "text/event-stream" {
		var acc []string
		for _, h := range got {
			acc = append(acc, h.Get("Accept"))
		}
		t.Fatalf("Accept sent to the remote: %q", acc)
	}
}
