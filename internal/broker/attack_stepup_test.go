package broker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// Hole (review): the step-up loop guard counted every authorization of
// an operation for the life of the process, so a server that legitimately
// asks for one more scope now and then (or tokens without refresh tokens)
// stopped tools/call after three logins until the broker or bridge was
// restarted. The guard exists for "authorized, and the server still
// refuses": it counts authorizations not followed by success.

// stepUpServer is a protected MCP server with its own authorization
// server (client credentials grant, tokens carry the scopes asked for).
type stepUpServer struct {
	*httptest.Server
	mu     sync.Mutex        // guards the fields below
	scopes map[string]string // access token → its scopes
	ok     int               // tools/call answered with success
	tokens int               // tokens issued
	// need is the scope the next tools/call requires; refuse answers
	// every request insufficient_scope with a new scope.
	need    func(ok int) string
	refuse  bool
	refused int
}

func newStepUpServer(t *testing.T, need func(ok int) string) *stepUpServer {
	s := &stepUpServer{scopes: map[string]string{}, need: need}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *stepUpServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.URL
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/oauth-protected-resource/mcp":
		json.NewEncoder(w).Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}})
	case "/.well-known/oauth-authorization-server":
		json.NewEncoder(w).Encode(map[string]any{"issuer": base, "token_endpoint": base + "/token",
			"grant_types_supported": []string{"client_credentials"}, "token_endpoint_auth_methods_supported": []string{"client_secret_basic"}})
	case "/token":
		r.ParseForm()
		s.tokens++
		tok := fmt.Sprintf("tok-%d", s.tokens)
		s.scopes[tok] = r.PostForm.Get("scope")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600,"scope":%q}`, tok, r.PostForm.Get("scope"))
	case "/mcp":
		s.mcp(w, r)
	default:
		w.WriteHeader(404)
	}
}

func (s *stepUpServer) mcp(w http.ResponseWriter, r *http.Request) {
	need := s.need(s.ok)
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !found:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer resource_metadata=%q, scope=%q`, s.URL+"/.well-known/oauth-protected-resource/mcp", need))
		w.WriteHeader(401)
		return
	case s.refuse:
		s.refused++
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="admin%d"`, s.refused))
		w.WriteHeader(403)
		return
	case !strings.Contains(" "+s.scopes[tok]+" ", " "+need+" "):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q`, need))
		w.WriteHeader(403)
		return
	}
	s.ok++
	w.Write([]byte(`{"jsonrpc":"2.0","id":5,"result":{"content":[]}}`))
}

func (s *stepUpServer) counts() (ok, tokens int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.tokens
}

// stepUpBroker is a broker whose remote logs in by itself (client
// credentials), so step-ups need no person.
func stepUpBroker(t *testing.T, s *stepUpServer) *Broker {
	u := s.URL + "/mcp"
	e := oauth.NewEngine(oauth.NewGuard(u, false, false), nil, nil)
	cb, _ := oauth.ExternalListener(CallbackURI(addr, ""))
	cred := oauth.NewCredential(e, vault.NewMemory(), oauth.Config{ServerURL: u, NonInteractive: true, ClientCredentials: true,
		ClientID: "machine", ClientSecret: "machine-secret", DPoP: "off", Callback: cb})
	b, err := New(Options{Remotes: []*Remote{{URL: u, Session: cred, Callback: cb}}, HTTP: s.Client(), Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const toolsCall = `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","arguments":{}}}`

func callTool(b *Broker) *httptest.ResponseRecorder {
	return do(b, "POST", "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}, toolsCall)
}

// TestStepUpKeepsWorking: the reviewer's stepupok server (one more scope
// after every two successful calls) answers 12 calls in a row.
func TestStepUpKeepsWorking(t *testing.T) {
	s := newStepUpServer(t, func(ok int) string { return fmt.Sprintf("s%d", ok/2) })
	b := stepUpBroker(t, s)
	for i := 1; i <= 12; i++ {
		if w := callTool(b); w.Code != 200 || !strings.Contains(w.Body.String(), `"result"`) {
			t.Fatalf("call %d: %d %s", i, w.Code, w.Body)
		}
	}
	if ok, tokens := s.counts(); ok != 12 || tokens != 6 {
		t.Fatalf("%d successful calls with %d tokens, want 12 with 6", ok, tokens)
	}
}

// TestStepUpLoopStillStops: a server that refuses after every
// authorization gets three within one request, and none in the next
// request until one succeeds; the broker's /oauth/login clears the guard.
func TestStepUpLoopStillStops(t *testing.T) {
	s := newStepUpServer(t, func(int) string { return "s0" })
	b := stepUpBroker(t, s)
	if w := callTool(b); w.Code != 200 {
		t.Fatalf("first call: %d %s", w.Code, w.Body)
	}
	s.mu.Lock()
	s.refuse = true
	s.mu.Unlock()
	_, before := s.counts()
	w := callTool(b)
	if _, after := s.counts(); after-before != 3 || w.Code/100 != 4 || !strings.Contains(w.Body.String(), `"error"`) {
		t.Fatalf("refusing server: %d authorizations, answer %d %s; want 3 and a JSON-RPC error", after-before, w.Code, w.Body)
	}
	_, before = s.counts()
	callTool(b)
	if _, after := s.counts(); after != before {
		t.Fatalf("the next request authorized %d more times against a server that refuses every token", after-before)
	}

	// the operator fixes the server; a person logs in at the broker; a
	// later step-up works again
	s.mu.Lock()
	s.refuse, s.need = false, func(ok int) string { return fmt.Sprintf("s%d", min(ok, 2)) }
	s.mu.Unlock()
	if w := do(b, "GET", "/oauth/login", nil, ""); w.Code != 200 {
		t.Fatalf("/oauth/login: %d %s", w.Code, w.Body)
	}
	waitNoLogin(t, b)
	for i := 1; i <= 3; i++ {
		if w := callTool(b); w.Code != 200 {
			t.Fatalf("call %d after /oauth/login: %d %s", i, w.Code, w.Body)
		}
	}
}
