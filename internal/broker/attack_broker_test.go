package broker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

const localSecret = "local-secret-local-secret-local-secret"

// TestLoginNeedsTheLocalToken: with --require-local-token, a caller
// without the token can neither start a login (which would let them sign
// in as someone else and swap the identity the holder's calls use) nor
// read the status.
func TestLoginNeedsTheLocalToken(t *testing.T) {
	b, _, _ := setup(t, localSecret, false)
	for name, hdr := range map[string]map[string]string{
		"no token":           nil,
		"wrong token":        {"X-Mcpgate-Token": "nope"},
		"wrong bearer":       {"Authorization": "Bearer nope"},
		"token as basic":     {"Authorization": "Basic " + localSecret},
		"cookie only":        {"Cookie": "mcpgate_login_8976=" + localSecret},
		"cross-site browser": {"Sec-Fetch-Site": "cross-site", "X-Mcpgate-Token": localSecret},
		"same-site page":     {"Sec-Fetch-Site": "same-site"},
	} {
		for _, path := range []string{"/oauth/login", "/oauth/login?ticket=guess", "/oauth/login?ticket=" + localSecret} {
			w := do(b, "GET", path, hdr, "")
			if (w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden) || w.Header().Get("Set-Cookie") != "" {
				t.Errorf("%s %s: %d %q %s", name, path, w.Code, w.Header().Get("Set-Cookie"), w.Body)
			}
		}
		if w := do(b, "GET", "/oauth/status", hdr, ""); w.Code != http.StatusUnauthorized && hdr["X-Mcpgate-Token"] != localSecret {
			t.Errorf("%s: status answered %d %s", name, w.Code, w.Body)
		}
	}
	b.mu.Lock()
	n := len(b.logins)
	b.mu.Unlock()
	if n != 0 {
		t.Fatalf("a login was started without the local token")
	}
	if w := do(b, "GET", "/oauth/status", map[string]string{"X-Mcpgate-Token": localSecret}, ""); w.Code != 200 {
		t.Fatalf("status with the token: %d", w.Code)
	}
}

// TestLoginLinkIsOneTime: the holder gets a one-time link with the token;
// it works once, for its own remote, before it expires.
func TestLoginLinkIsOneTime(t *testing.T) {
	b, _, _ := setup(t, localSecret, false)
	w := do(b, "GET", "/oauth/login", map[string]string{"Authorization": "Bearer " + localSecret}, "")
	if w.Code != 200 || strings.Contains(w.Body.String(), localSecret) {
		t.Fatalf("login link: %d %s", w.Code, w.Body)
	}
	var link string
	for _, l := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(l, "http://") {
			link = l
		}
	}
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("ticket") == "" || u.Host != addr || u.Path != "/oauth/login" {
		t.Fatalf("link %q", link)
	}
	// first use starts the flow (the fake remote has no authorization
	// server, so the flow fails — but it was let in)
	w = do(b, "GET", u.RequestURI(), nil, "")
	if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
		t.Fatalf("first use of the link: %d %s", w.Code, w.Body)
	}
	waitNoLogin(t, b)
	if w := do(b, "GET", u.RequestURI(), nil, ""); w.Code != http.StatusForbidden {
		t.Fatalf("second use of the link: %d %s", w.Code, w.Body)
	}
	// an expired link
	w = do(b, "GET", "/oauth/login", map[string]string{"X-Mcpgate-Token": localSecret}, "")
	link = strings.TrimSpace(w.Body.String()[strings.Index(w.Body.String(), "http://"):])
	u, _ = url.Parse(link)
	b.mu.Lock()
	for k, tk := range b.tickets {
		tk.expires = time.Now().Add(-time.Second)
		b.tickets[k] = tk
	}
	b.mu.Unlock()
	if w := do(b, "GET", u.RequestURI(), nil, ""); w.Code != http.StatusForbidden {
		t.Fatalf("expired link: %d %s", w.Code, w.Body)
	}
	// links are bounded
	for i := 0; i < maxTickets+2; i++ {
		w = do(b, "GET", "/oauth/login", map[string]string{"X-Mcpgate-Token": localSecret}, "")
	}
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("unbounded login links: %d", w.Code)
	}
}

func waitNoLogin(t *testing.T, b *Broker) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b.mu.Lock()
		n := len(b.logins)
		b.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the login did not end")
}

// TestCallbackNeedsTheBrowserThatStartedTheLogin: an authorization
// response reaches the waiting flow only from the browser holding the
// flow's cookie; anything else is refused before the flow (and so the
// token endpoint and the vault) sees it.
func TestCallbackNeedsTheBrowserThatStartedTheLogin(t *testing.T) {
	for _, token := range []string{"", localSecret} {
		b, store, _ := setup(t, token, false)
		rm := b.o.Remotes[0]
		b.mu.Lock()
		b.logins[rm] = &loginFlow{urls: make(chan string, 1), binding: "the-binding"}
		b.mu.Unlock()
		q := "/oauth/callback?state=s&code=attacker-code"
		for name, hdr := range map[string]map[string]string{
			"no cookie":       nil,
			"wrong cookie":    {"Cookie": b.cookieName() + "=other"},
			"other port":      {"Cookie": "mcpgate_login_1=the-binding"},
			"token no cookie": {"X-Mcpgate-Token": localSecret},
			"empty cookie":    {"Cookie": b.cookieName() + "="},
		} {
			if w := do(b, "GET", q, hdr, ""); w.Code != http.StatusForbidden {
				t.Errorf("token %q, %s: %d %s", token, name, w.Code, w.Body)
			}
		}
		// the right cookie is passed on to the flow (here: the listener,
		// which has no handler and answers 404 itself)
		w := do(b, "GET", q, map[string]string{"Cookie": b.cookieName() + "=the-binding"}, "")
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "No sign-in in progress") {
			t.Errorf("token %q, right cookie: %d %s", token, w.Code, w.Body)
		}
		if keys, _ := store.List(""); len(keys) != 0 {
			t.Errorf("the vault was touched: %v", keys)
		}
	}
}

// TestLoginSetsABindingCookie: a flow sets the HttpOnly SameSite=Lax
// cookie its callback must carry.
func TestLoginSetsABindingCookie(t *testing.T) {
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		iss := "http://" + r.Host
		switch r.URL.Path {
		case "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource":
			fmt.Fprintf(w, `{"resource":%q,"authorization_servers":[%q]}`, iss+"/mcp", iss)
		case "/.well-known/oauth-authorization-server":
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":%q,"token_endpoint":%q,"code_challenge_methods_supported":["S256"],"response_types_supported":["code"]}`,
				iss, iss+"/authorize", iss+"/token")
		case "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+iss+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		default:
			http.NotFound(w, r)
		}
	}))
	defer as.Close()
	u := as.URL + "/mcp"
	e := oauth.NewEngine(oauth.NewGuard(u, false, false), nil, nil)
	cb, _ := oauth.ExternalListener(CallbackURI(addr, ""))
	s := oauth.NewCredential(e, vault.NewMemory(), oauth.Config{ServerURL: u, ClientID: "pre", DPoP: "off", Callback: cb})
	b, err := New(Options{Remotes: []*Remote{{URL: u, Session: s, Callback: cb}}, HTTP: as.Client(), Addr: addr, LoginTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w := do(b, "GET", "/oauth/login", nil, "")
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), as.URL+"/authorize") {
		t.Fatalf("login: %d %s %s", w.Code, w.Header(), w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != b.cookieName() || !c[0].HttpOnly || c[0].SameSite != http.SameSiteLaxMode || c[0].Path != "/oauth/" || len(c[0].Value) < 32 {
		t.Fatalf("binding cookie: %+v", c)
	}
	st := do(b, "GET", "/oauth/status", nil, "")
	if !strings.Contains(st.Body.String(), `"login_in_progress":true`) {
		t.Fatalf("status: %s", st.Body)
	}
	// a foreign browser's callback with the right state is still refused
	loc, _ := url.Parse(w.Header().Get("Location"))
	state := loc.Query().Get("state")
	if w := do(b, "GET", "/oauth/callback?code=x&state="+url.QueryEscape(state), nil, ""); w.Code != http.StatusForbidden {
		t.Fatalf("callback with the right state from another browser: %d %s", w.Code, w.Body)
	}
}

// TestBrokerUpstreamRedirectKeepsCredentials: a remote that redirects the
// broker's upstream request to another origin gets an error answer; the
// other origin sees neither the token nor the configured headers.
func TestBrokerUpstreamRedirectKeepsCredentials(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization")+"|"+r.Header.Get("X-Api-Key"))
		mu.Unlock()
	}))
	defer evil.Close()
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	defer remote.Close()
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
	b, err := New(Options{Remotes: []*Remote{{URL: u, Session: s, Callback: cb, Headers: http.Header{"X-Api-Key": {"api-secret"}}}},
		HTTP: &http.Client{}, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"POST", "GET", "DELETE"} {
		w := do(b, m, "/mcp", map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}, call)
		if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), strings.TrimPrefix(evil.URL, "http://")) {
			t.Errorf("%s: %d %s", m, w.Code, w.Body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range leaked {
		if strings.Contains(l, "secret") || strings.Contains(l, "remote-token") {
			t.Errorf("credential at the other origin: %s", l)
		}
	}
}
