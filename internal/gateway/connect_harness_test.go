package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// fakeAccountHost stands in for the built-in authorization server in unit
// tests: its browser session is a "test_user" cookie, its store memory.
type fakeAccountHost struct {
	issuer string
	mu     sync.Mutex // guards kv
	kv     map[string][]byte
}

func (h *fakeAccountHost) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
func (h *fakeAccountHost) AccountIssuer() string                            { return h.issuer }
func (h *fakeAccountHost) BrowserUser(r *http.Request) string {
	if c, err := r.Cookie("test_user"); err == nil {
		return c.Value
	}
	return ""
}
func (h *fakeAccountHost) AccountPage(w http.ResponseWriter, status int, title, msg string, failed bool) {
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s: %s", title, msg)
}
func (h *fakeAccountHost) AccountListPage(w http.ResponseWriter, user, action, csrf string, rows [][4]string) {
	fmt.Fprintf(w, "accounts of %s csrf=%s rows=%q", user, csrf, rows)
}
func (h *fakeAccountHost) AccountPut(b, k string, v []byte, _ time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kv[b+"/"+k] = append([]byte(nil), v...)
	return nil
}
func (h *fakeAccountHost) AccountGet(b, k string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kv[b+"/"+k], nil
}
func (h *fakeAccountHost) AccountTake(b, k string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.kv[b+"/"+k]
	delete(h.kv, b+"/"+k)
	return v, nil
}
func (h *fakeAccountHost) AccountDelete(b, k string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.kv, b+"/"+k)
	return nil
}
func (h *fakeAccountHost) AccountList(b string) (map[string][]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range h.kv {
		if strings.HasPrefix(k, b+"/") {
			out[strings.TrimPrefix(k, b+"/")] = v
		}
	}
	return out, nil
}

// fakeUpstreamAS is the upstream's authorization server: metadata with
// PKCE, RFC 9207 iss; /authorize signs in whoever the test names in
// ?login_hint (the user at the upstream) and redirects at once; /token
// redeems codes (PKCE checked) and rotating refresh tokens.
type fakeUpstreamAS struct {
	srv      *httptest.Server
	mu       sync.Mutex // guards codes, refresh, issued
	codes    map[string]asCode
	refresh  map[string]string // refresh token → user
	issued   []string          // access tokens, in order
	revoked  []string          // tokens sent to /revoke
	refreshN atomic.Int64
	// refuseRefresh makes refresh grants fail with invalid_grant.
	refuseRefresh atomic.Bool
	// wrongIss sends a foreign iss on the callback.
	wrongIss atomic.Bool
	user     atomic.Value // string: who signs in at /authorize
}

type asCode struct {
	user, challenge, redirect string
}

func newFakeUpstreamAS(t testing.TB) *fakeUpstreamAS {
	a := &fakeUpstreamAS{codes: map[string]asCode{}, refresh: map[string]string{}}
	a.user.Store("alice-at-upstream")
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		iss := a.srv.URL
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
			"code_challenge_methods_supported": []string{"S256"}, "authorization_response_iss_parameter_supported": true,
			"grant_types_supported": []string{"authorization_code", "refresh_token"}, "revocation_endpoint": iss + "/revoke",
		})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code := randomToken()
		a.mu.Lock()
		a.codes[code] = asCode{user: a.user.Load().(string), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		a.mu.Unlock()
		iss := a.srv.URL
		if a.wrongIss.Load() {
			iss = "https://evil.example"
		}
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {iss}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("/token", a.token)
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a.mu.Lock()
		defer a.mu.Unlock()
		a.revoked = append(a.revoked, r.Form.Get("token"))
		delete(a.refresh, r.Form.Get("token"))
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeUpstreamAS) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	a.mu.Lock()
	defer a.mu.Unlock()
	var user string
	switch r.Form.Get("grant_type") {
	case "authorization_code":
		c, ok := a.codes[r.Form.Get("code")]
		delete(a.codes, r.Form.Get("code"))
		if !ok || pkceS256(r.Form.Get("code_verifier")) != c.challenge || c.redirect != r.Form.Get("redirect_uri") {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		user = c.user
	case "refresh_token":
		a.refreshN.Add(1)
		u, ok := a.refresh[r.Form.Get("refresh_token")]
		delete(a.refresh, r.Form.Get("refresh_token")) // rotation: a reused refresh token fails
		if !ok || a.refuseRefresh.Load() {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		user = u
	default:
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	at, rt := "up-at-"+user+"-"+randomToken()[:12], "up-rt-"+randomToken()
	a.refresh[rt] = user
	a.issued = append(a.issued, at)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt})
}

func (a *fakeUpstreamAS) lastIssued() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.issued) == 0 {
		return ""
	}
	return a.issued[len(a.issued)-1]
}

// connectGateway is a gateway whose /mcp upstream uses connected accounts
// at a fakeUpstreamAS, with callers signed by tg.idp (the host's issuer).
type connectGateway struct {
	*testGateway
	as   *fakeUpstreamAS
	host *fakeAccountHost
	src  *oauthSource
	logs *bytes.Buffer
}

func startConnectGateway(t testing.TB, mutate func(*config.UpstreamOAuth)) *connectGateway {
	t.Helper()
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	as := newFakeUpstreamAS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "token.key")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(ln.Addr().String(), idp, up.srv.URL)
	oc := &config.UpstreamOAuth{Issuer: as.srv.URL, ClientID: "mcpgate-gw", TokenKeyFile: keyFile}
	if mutate != nil {
		mutate(oc)
	}
	cfg.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{OAuth: oc}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	host := &fakeAccountHost{issuer: idp.Issuer, kv: map[string][]byte{}}
	logs := &bytes.Buffer{}
	lw := &lockedWriter{w: logs}
	gw, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(string) string { return "" }, AuthServer: host})
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGateway{gw: gw, idp: idp, up: up, cfg: cfg, url: "http://" + ln.Addr().String(), audit: &bytes.Buffer{}}
	gw.audit.w = &lockedWriter{w: tg.audit}
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if resp, err := http.Get(tg.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}
	return &connectGateway{testGateway: tg, as: as, host: host, src: gw.mounts[0].credSources[0].(*oauthSource), logs: logs}
}

// browser is a user agent signed in to the gateway as user ("" for none).
func (cg *connectGateway) browser(t testing.TB, user string) *http.Client {
	jar, _ := cookiejar.New(nil)
	if user != "" {
		u, _ := url.Parse(cg.url)
		jar.SetCookies(u, []*http.Cookie{{Name: "test_user", Value: user, Path: "/"}})
	}
	return &http.Client{Jar: jar}
}

// open follows a URL in browser b; it returns the last status and body.
func open(t testing.TB, b *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

const initURLBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"t","version":"1"}}}`

// connectURL asks for a connect URL as tok's caller (a 2025-11-25
// initialize declaring URL elicitation) and returns it.
func (cg *connectGateway) connectURL(t testing.TB, tok string) string {
	t.Helper()
	r := cg.do(t, "POST", "/mcp", initURLBody, bearer(tok))
	var m struct {
		Error struct {
			Code int `json:"code"`
			Data struct {
				Elicitations []struct {
					Mode, URL, ElicitationID string
				} `json:"elicitations"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil || m.Error.Code != -32042 || len(m.Error.Data.Elicitations) != 1 {
		t.Fatalf("want -32042 with one elicitation, got %d %s", r.status, r.body)
	}
	e := m.Error.Data.Elicitations[0]
	if e.Mode != "url" || !strings.HasPrefix(e.URL, cg.url+"/connect?ticket=") {
		t.Fatalf("elicitation %+v", e)
	}
	return e.URL
}

// connect runs the whole flow for sub in a browser signed in as sub.
func (cg *connectGateway) connect(t testing.TB, sub string) string {
	t.Helper()
	tok := cg.token(t, sub, "mcp:read")
	status, body := open(t, cg.browser(t, sub), cg.connectURL(t, tok))
	if status != 200 || !strings.Contains(body, "Account connected") {
		t.Fatalf("connect: %d %s", status, body)
	}
	return tok
}
