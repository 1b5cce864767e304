package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

const addr = "127.0.0.1:8976"

// setup returns a broker in front of a fake remote that accepts only
// "Bearer remote-token", and the store holding that credential.
func setup(t *testing.T, localToken string, logged bool) (*Broker, *vault.Memory, *[]http.Header) {
	var seen []http.Header
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		if r.Header.Get("Authorization") != "Bearer remote-token" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "s9")
		b, _ := io.ReadAll(r.Body)
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		json.Unmarshal(b, &m)
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"ok\":true}}\n\n", m.ID)
	}))
	t.Cleanup(remote.Close)
	store := vault.NewMemory()
	url := remote.URL + "/mcp"
	if logged {
		rec := oauth.Record{Profile: "default", Server: url, Resource: url, Issuer: "https://as.example",
			Client: oauth.Client{ID: "c"}, Token: oauth.Token{AccessToken: "remote-token", TokenType: "Bearer",
				RefreshToken: "remote-refresh", Expiry: time.Now().Add(time.Hour), Scopes: []string{"mcp:read"}}}
		raw, _ := json.Marshal(rec)
		key := oauth.TokenKey("default", rec.Issuer, "c", url)
		store.Put(key, raw)
		store.Put(oauth.ServerKey("default", url), []byte(key))
	}
	e := oauth.NewEngine(oauth.NewGuard(url, false, false), nil, nil)
	cb, _ := oauth.ExternalListener(CallbackURI(addr, ""))
	s := oauth.NewCredential(e, store, oauth.Config{ServerURL: url, NonInteractive: true, DPoP: "off", Callback: cb})
	b, err := New(Options{Remotes: []*Remote{{URL: url, Session: s, Callback: cb}}, HTTP: remote.Client(), Addr: addr, LocalToken: localToken})
	if err != nil {
		t.Fatal(err)
	}
	return b, store, &seen
}

func do(b http.Handler, method, path string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	r.Host = addr
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	return w
}

const call = `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`

func TestForwardsWithTheRemoteCredential(t *testing.T) {
	b, _, seen := setup(t, "", true)
	w := do(b, "POST", "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Authorization": "Bearer something-the-client-sent", "Cookie": "x=y"}, call)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"id":5`) || w.Header().Get("Mcp-Session-Id") != "s9" {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	got := (*seen)[0]
	if got.Get("Authorization") != "Bearer remote-token" || got.Get("Cookie") != "" {
		t.Fatalf("upstream headers: %v", got)
	}
}

func TestDNSRebindingAndOrigin(t *testing.T) {
	b, _, seen := setup(t, "", true)
	for _, h := range []map[string]string{{"Host": "evil.example:8976"}, {"Host": "127.0.0.1:9999"}, {"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1.evil.example:8976"}} {
		if w := do(b, "POST", "/mcp", h, call); w.Code != http.StatusForbidden {
			t.Errorf("%v: %d", h, w.Code)
		}
	}
	if len(*seen) != 0 {
		t.Fatal("a refused request reached the remote")
	}
	if w := do(b, "POST", "/mcp", map[string]string{"Host": "localhost:8976", "Origin": "http://localhost:8976"}, call); w.Code != 200 {
		t.Fatalf("own origin: %d", w.Code)
	}
}

func TestLocalToken(t *testing.T) {
	b, _, seen := setup(t, "local-secret-0123456789", true)
	for _, h := range []map[string]string{{}, {"Authorization": "Bearer wrong"}, {"X-Mcpgate-Token": "local-secret-012345678"}} {
		if w := do(b, "POST", "/mcp", h, call); w.Code != http.StatusUnauthorized {
			t.Errorf("%v: %d", h, w.Code)
		}
	}
	if len(*seen) != 0 {
		t.Fatal("a request without the local token reached the remote")
	}
	w := do(b, "POST", "/mcp", map[string]string{"Authorization": "Bearer local-secret-0123456789"}, call)
	if w.Code != 200 || (*seen)[0].Get("Authorization") != "Bearer remote-token" {
		t.Fatalf("with the local token: %d; upstream saw %q", w.Code, (*seen)[0].Get("Authorization"))
	}
	if w := do(b, "POST", "/oauth/logout", nil, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("logout without the local token: %d", w.Code)
	}
}

func TestOAuthEndpoints(t *testing.T) {
	b, store, _ := setup(t, "", true)
	w := do(b, "GET", "/oauth/status", nil, "")
	if w.Code != 200 || strings.Contains(w.Body.String(), "remote-token") || strings.Contains(w.Body.String(), "remote-refresh") ||
		!strings.Contains(w.Body.String(), `"logged_in":true`) {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	if w := do(b, "GET", "/oauth/logout", nil, ""); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET logout: %d", w.Code)
	}
	if w := do(b, "POST", "/oauth/logout", map[string]string{"Sec-Fetch-Site": "cross-site"}, ""); w.Code != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d", w.Code)
	}
	if keys, _ := store.List("token|"); len(keys) != 1 {
		t.Fatal("a refused logout deleted the credential")
	}
	if w := do(b, "POST", "/oauth/logout", map[string]string{"Sec-Fetch-Site": "same-origin"}, ""); w.Code != 200 {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if keys, _ := store.List("token|"); len(keys) != 0 {
		t.Fatal("logout left the credential")
	}
	if w := do(b, "GET", "/healthz", nil, ""); w.Code != 200 {
		t.Fatalf("healthz: %d", w.Code)
	}
	if w := do(b, "GET", "/oauth/callback?state=x&code=y", nil, ""); w.Code != 404 {
		t.Fatalf("callback without a login in progress: %d", w.Code)
	}
}

func TestNoCredentialSaysHowToLogIn(t *testing.T) {
	b, _, _ := setup(t, "", false)
	w := do(b, "POST", "/mcp", map[string]string{"Content-Type": "application/json"}, call)
	var m struct {
		ID    int `json:"id"`
		Error struct {
			Code    int
			Message string
		}
	}
	if w.Code != 401 || json.Unmarshal(w.Body.Bytes(), &m) != nil || m.ID != 5 || !strings.Contains(m.Error.Message, "/oauth/login") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
