package oauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// recorder is a fake MCP server + authorization server that records the
// paths it was asked for.
type recorder struct {
	mu    sync.Mutex // guards paths, docs and token (read by the handler)
	paths []string
	srv   *httptest.Server
	docs  map[string]any // path -> JSON document
	token func(w http.ResponseWriter, r *http.Request)
}

func newRecorder(t *testing.T) *recorder {
	rc := &recorder{docs: map[string]any{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.paths = append(rc.paths, r.URL.Path)
		doc, ok := rc.docs[r.URL.Path]
		tok := rc.token
		rc.mu.Unlock()
		if r.URL.Path == "/token" && tok != nil {
			tok(w, r)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *recorder) requested() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.paths)
}

func testEngine(server string) *Engine { return NewEngine(NewGuard(server, false, false), nil, nil) }

func TestResourceMetadataOrder(t *testing.T) {
	got := ResourceMetadataURLs("https://h.example/a/mcp", "")
	want := []string{"https://h.example/.well-known/oauth-protected-resource/a/mcp", "https://h.example/.well-known/oauth-protected-resource"}
	if !slices.Equal(got, want) {
		t.Fatalf("%v", got)
	}
	got = ResourceMetadataURLs("https://h.example/mcp", "https://h.example/custom.json")
	if got[0] != "https://h.example/custom.json" || len(got) != 3 {
		t.Fatalf("challenge URL first: %v", got)
	}
}

func TestServerMetadataOrder(t *testing.T) {
	got, _ := ServerMetadataURLs("https://as.example/tenant1")
	want := []string{
		"https://as.example/.well-known/oauth-authorization-server/tenant1",
		"https://as.example/.well-known/openid-configuration/tenant1",
		"https://as.example/tenant1/.well-known/openid-configuration",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("path issuer: %v", got)
	}
	for _, u := range got {
		if strings.HasSuffix(u, "/.well-known/oauth-authorization-server") || strings.HasSuffix(u, "/.well-known/openid-configuration") && !strings.Contains(u, "tenant1") {
			t.Fatalf("root document probed for a path issuer: %s", u)
		}
	}
	got, _ = ServerMetadataURLs("https://as.example")
	if !slices.Equal(got, []string{"https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"}) {
		t.Fatalf("root issuer: %v", got)
	}
	if _, err := ServerMetadataURLs("https://as.example/?x=1"); err == nil {
		t.Fatal("issuer with a query accepted")
	}
}

func TestDiscoverPathAwareNeverRootFirst(t *testing.T) {
	rc := newRecorder(t)
	base := rc.srv.URL
	rc.docs["/.well-known/oauth-protected-resource/mcp"] = map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base + "/t1"}, "scopes_supported": []string{"a"}}
	rc.docs["/.well-known/oauth-protected-resource"] = map[string]any{"resource": "https://evil.example", "authorization_servers": []string{"https://evil.example"}}
	rc.docs["/t1/.well-known/openid-configuration"] = map[string]any{"issuer": base + "/t1", "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token", "code_challenge_methods_supported": []string{"S256"}}
	rc.docs["/.well-known/oauth-authorization-server"] = map[string]any{"issuer": base, "token_endpoint": "https://evil.example/token"}
	d, err := testEngine(base+"/mcp").Discover(context.Background(), base+"/mcp", Challenge{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.AS.Issuer != base+"/t1" || d.Resource != base+"/mcp" {
		t.Fatalf("discovery: %+v", d)
	}
	want := []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-authorization-server/t1", "/.well-known/openid-configuration/t1", "/t1/.well-known/openid-configuration"}
	if got := rc.requested(); !slices.Equal(got, want) {
		t.Fatalf("probe order %v, want %v", got, want)
	}
}

func TestDiscoverRefusesMismatches(t *testing.T) {
	rc := newRecorder(t)
	base := rc.srv.URL
	rc.docs["/.well-known/oauth-protected-resource/mcp"] = map[string]any{"resource": "https://evil.example/mcp", "authorization_servers": []string{base}}
	_, err := testEngine(base+"/mcp").Discover(context.Background(), base+"/mcp", Challenge{}, "")
	if !errors.Is(err, ErrResourceMismatch) {
		t.Fatalf("resource mismatch: %v", err)
	}
	if slices.Contains(rc.requested(), "/.well-known/oauth-authorization-server") {
		t.Fatal("AS metadata fetched after a resource mismatch")
	}
	// issuer in the document differs from the one the URL was built from
	rc.docs["/.well-known/oauth-protected-resource/mcp"] = map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}}
	rc.docs["/.well-known/oauth-authorization-server"] = map[string]any{"issuer": base + "/other"}
	rc.docs["/.well-known/openid-configuration"] = map[string]any{"issuer": base + "/"}
	if _, err := testEngine(base+"/mcp").Discover(context.Background(), base+"/mcp", Challenge{}, ""); err == nil || !strings.Contains(err.Error(), "mix-up") {
		t.Fatalf("issuer mismatch: %v", err)
	}
}

func TestDiscoverLegacyFallback(t *testing.T) {
	rc := newRecorder(t)
	base := rc.srv.URL
	d, err := testEngine(base+"/mcp").Discover(context.Background(), base+"/mcp", Challenge{}, "")
	if err != nil || !d.AS.Legacy || d.AS.AuthorizationEndpoint != base+"/authorize" || d.AS.TokenEndpoint != base+"/token" {
		t.Fatalf("fallback endpoints: %+v %v", d, err)
	}
	// a challenge that names metadata which is missing is not a legacy server
	_, err = testEngine(base+"/mcp").Discover(context.Background(), base+"/mcp", Challenge{Params: map[string]string{"resource_metadata": base + "/nope.json"}}, "")
	if err == nil {
		t.Fatal("a missing announced metadata document fell back to legacy endpoints")
	}
}

func TestGuard(t *testing.T) {
	pub := NewGuard("https://mcp.example.com/mcp", false, false)
	cases := []struct {
		g   *Guard
		url string
		ok  bool
	}{
		{pub, "https://as.example.com/x", true},
		{pub, "http://as.example.com/x", false},  // plain http off loopback
		{pub, "javascript:alert(1)", false},      // C24
		{pub, "file:///etc/passwd", false},       // C24
		{pub, "https://169.254.169.254/", false}, // metadata service
		{pub, "https://10.0.0.1/", false},        // private, server is public
		{pub, "https://127.0.0.1/", false},       // loopback, server is public
		{pub, "https://user:pw@as.example.com/", false},
		{NewGuard("http://127.0.0.1:1/mcp", false, false), "http://localhost:2/token", true},
		{NewGuard("http://127.0.0.1:1/mcp", false, false), "https://169.254.169.254/", false},
		{NewGuard("https://mcp.example.com/mcp", false, true), "https://10.0.0.1/", true},
		{NewGuard("https://mcp.example.com/mcp", true, false), "http://as.example.com/", true},
	}
	for _, c := range cases {
		err := c.g.CheckURL(c.url, "test URL")
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.url, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("credentials in the error: %v", err)
		}
	}
	if err := pub.Control("tcp", "10.1.2.3:443", nil); err == nil {
		t.Error("dial to a private address allowed")
	}
	if err := pub.Control("tcp", "93.184.216.34:443", nil); err != nil {
		t.Error(err)
	}
}

func TestCheckIssuer(t *testing.T) {
	adv := &ServerMetadata{Issuer: "https://as.example", ISSParameterSupported: true}
	not := &ServerMetadata{Issuer: "https://as.example"}
	cases := []struct {
		as *ServerMetadata
		q  url.Values
		ok bool
	}{
		{adv, url.Values{"iss": {"https://as.example"}}, true},
		{adv, url.Values{}, false},                               // advertised, absent
		{adv, url.Values{"iss": {"https://as.example/"}}, false}, // no normalisation
		{adv, url.Values{"iss": {"https://evil.example"}}, false},
		{not, url.Values{}, true},
		{not, url.Values{"iss": {"https://evil.example"}}, false}, // unadvertised but present: compared
		{not, url.Values{"iss": {"https://as.example", "https://as.example"}}, false},
	}
	for i, c := range cases {
		if err := CheckIssuer(c.q, c.as); (err == nil) != c.ok {
			t.Errorf("case %d: %v", i, err)
		}
	}
	// a mismatched issuer hides the AS's error message (mix-up: do not act on it)
	err := checkCallback(url.Values{"state": {"s"}, "iss": {"https://evil.example"}, "error": {"access_denied"}, "error_description": {"click here"}}, "s", adv)
	if err == nil || strings.Contains(err.Error(), "click here") {
		t.Fatalf("error of a mismatched issuer surfaced: %v", err)
	}
	if err := checkCallback(url.Values{"state": {"x"}, "code": {"c"}}, "s", not); err == nil {
		t.Fatal("wrong state accepted")
	}
}

func TestCanonicalResource(t *testing.T) {
	for in, want := range map[string]string{
		"HTTPS://MCP.Example.com:443/mcp/": "https://mcp.example.com/mcp",
		"http://127.0.0.1:8080/mcp#frag":   "http://127.0.0.1:8080/mcp",
		"https://mcp.example.com/":         "https://mcp.example.com",
	} {
		if got, _ := CanonicalResource(in); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
	if !resourceCovers("https://h.example", "https://h.example/mcp") || resourceCovers("https://h.example/mc", "https://h.example/mcp") ||
		resourceCovers("https://evil.example/mcp", "https://h.example/mcp") {
		t.Fatal("resourceCovers")
	}
}

// TestTransientRefreshKeepsCredential: a 503 at the token endpoint leaves
// the stored credential in place; invalid_grant asks for a login (and
// also keeps it: only logout deletes).
func TestTransientRefreshKeepsCredential(t *testing.T) {
	rc := newRecorder(t)
	var status int
	var body string
	rc.token = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
	store := newMemStore()
	e := testEngine(rc.srv.URL)
	s := NewCredential(e, store, Config{ServerURL: rc.srv.URL + "/mcp", DPoP: "off"})
	rec := &Record{Profile: "default", Server: rc.srv.URL + "/mcp", Resource: rc.srv.URL + "/mcp", Issuer: rc.srv.URL,
		Client: Client{ID: "c", AuthMethod: "none"}, AS: ServerMetadata{Issuer: rc.srv.URL, TokenEndpoint: rc.srv.URL + "/token"},
		Token: Token{AccessToken: "old", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Now().Add(-time.Minute)}}
	if err := s.save(rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		status int
		body   string
		login  bool
	}{{503, `{"error":"temporarily_unavailable"}`, false}, {400, `{"error":"invalid_grant"}`, true}} {
		status, body = c.status, c.body
		_, err := s.Token(context.Background())
		if err == nil || errors.Is(err, ErrLoginRequired) != c.login {
			t.Fatalf("%d: %v", c.status, err)
		}
		if raw, _ := store.Get(TokenKey("default", rc.srv.URL, "c", rc.srv.URL+"/mcp")); raw == nil || !strings.Contains(string(raw), `"rt"`) {
			t.Fatalf("%d deleted or changed the stored credential", c.status)
		}
	}
	status, body = 200, `{"access_token":"new","token_type":"Bearer","expires_in":3600,"refresh_token":"rt2"}`
	tok, err := s.Token(context.Background())
	if err != nil || tok.AccessToken != "new" {
		t.Fatalf("refresh: %v %v", tok, err)
	}
	// a DPoP request answered with a Bearer token is refused
	k, _ := NewDPoPKey()
	if _, err := e.TokenRequest(context.Background(), &rec.AS, &rec.Client, url.Values{"grant_type": {"x"}}, k, nil); err == nil || !strings.Contains(err.Error(), "unbound") {
		t.Fatalf("Bearer answer to a DPoP request: %v", err)
	}
}

type memStore struct {
	mu sync.Mutex // guards m
	m  map[string][]byte
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }
func (s *memStore) Get(k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k], nil
}
func (s *memStore) Put(k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}
func (s *memStore) Delete(k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}
func (s *memStore) List(p string) ([]string, error) { return nil, nil }
func (s *memStore) Lock(context.Context, string) (func(), error) {
	return func() {}, nil
}

func TestBrowserOnlyHTTPAndNoShell(t *testing.T) {
	e := testEngine("https://mcp.example.com/mcp")
	var out strings.Builder
	err := e.open("javascript:alert(1)", Interaction{Out: &out, Browser: []string{"/bin/true"}})
	if err == nil {
		t.Fatal("a javascript: URL was opened")
	}
	// the URL is one argv element: shell metacharacters stay inert
	dir := t.TempDir()
	err = e.open("https://as.example.com/a?x=1;touch${IFS}"+dir+"/pwned", Interaction{Out: &out, Browser: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := http.Dir(dir).Open("/pwned"); err == nil {
		t.Fatal("the URL went through a shell")
	}
}

func TestCallbackHandler(t *testing.T) {
	as := &ServerMetadata{Issuer: "https://as.example"}
	results := make(chan callbackResult, 2)
	h := callbackHandler("/callback", "st", as, results)
	get := func(q string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/callback?"+q, nil))
		return w
	}
	// a forged request (wrong state) is answered but does not end the flow
	if w := get("state=bad&code=x"); w.Code != 400 || len(results) != 0 {
		t.Fatalf("forged: %d, %d results", w.Code, len(results))
	}
	// an error response ends it at once, with the AS's message escaped
	w := get(url.Values{"state": {"st"}, "error": {"access_denied"}, "error_description": {"<script>x</script>"}}.Encode())
	if w.Code != 400 || strings.Contains(w.Body.String(), "<script>") || !strings.Contains(w.Body.String(), "&lt;script&gt;") {
		t.Fatalf("error page: %d %s", w.Code, w.Body.String())
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers: %v", w.Header())
	}
	r := <-results
	if r.err == nil || !strings.Contains(r.err.Error(), "access_denied") {
		t.Fatalf("result: %+v", r)
	}
	// single use
	if w := get("state=st&code=y"); w.Code != http.StatusGone || len(results) != 0 {
		t.Fatalf("second use: %d", w.Code)
	}
	if w := httptest.NewRecorder(); true {
		h.ServeHTTP(w, httptest.NewRequest("GET", "/other", nil))
		if w.Code != 404 {
			t.Fatalf("other path: %d", w.Code)
		}
	}
}

// TestCredentialApplyAndHandle: a DPoP-bound credential is applied with a
// proof the resource-server verifier accepts (ath, content_digest, the
// server's nonce after use_dpop_nonce); a 401 on a live token refreshes it
// and retries with the new one.
func TestCredentialApplyAndHandle(t *testing.T) {
	rc := newRecorder(t)
	var refreshes int
	rc.token = func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("refresh_token") != "rt" || r.Header.Get("DPoP") == "" {
			w.WriteHeader(400)
			return
		}
		refreshes++
		w.Write([]byte(`{"access_token":"tok2","token_type":"DPoP","expires_in":3600}`))
	}
	store := newMemStore()
	e := testEngine(rc.srv.URL)
	key, _ := NewDPoPKey()
	der, _ := x509.MarshalPKCS8PrivateKey(key.Key)
	server := rc.srv.URL + "/mcp"
	s := NewCredential(e, store, Config{ServerURL: server})
	if err := s.save(&Record{Profile: "default", Server: server, Resource: server, Issuer: rc.srv.URL, DPoPKey: der,
		Client: Client{ID: "c", AuthMethod: "none"}, AS: ServerMetadata{Issuer: rc.srv.URL, TokenEndpoint: rc.srv.URL + "/token"},
		Token: Token{AccessToken: "tok", TokenType: "DPoP", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	v := dpop.NewVerifier(dpop.VerifierOptions{})
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	apply := func() *http.Request {
		req := httptest.NewRequest("POST", server, strings.NewReader(string(body)))
		if err := s.Apply(context.Background(), req, body); err != nil {
			t.Fatal(err)
		}
		return req
	}
	req := apply()
	tok := strings.TrimPrefix(req.Header.Get("Authorization"), "DPoP ")
	if tok != "tok" {
		t.Fatalf("Authorization: %q", req.Header.Get("Authorization"))
	}
	// A standard RFC 9449 proof: the current MCP DPoP profile (SEP-1932)
	// uses DPoP "without introducing MCP-specific claims, request body
	// digests, or additional proof material".
	if p, err := v.Verify(req.Header.Get("DPoP"), dpop.Params{Method: "POST", URL: server, AccessToken: tok, Body: body}); err != nil {
		t.Fatalf("proof: %v", err)
	} else if p.ContentDigest != "" {
		t.Fatalf("content_digest %q: want none by default", p.ContentDigest)
	}
	s.cfg.DPoPContentDigest = true // asked for: the digest over the body
	if _, err := v.Verify(apply().Header.Get("DPoP"), dpop.Params{Method: "POST", URL: server, AccessToken: tok, Body: body, RequireContentDigest: true}); err != nil {
		t.Fatalf("proof with content_digest: %v", err)
	}
	s.cfg.DPoPContentDigest = false
	// use_dpop_nonce: retry, and the next proof carries the nonce
	nonces := dpop.NewHMACNonces(time.Minute)
	resp := &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {`DPoP error="use_dpop_nonce"`}, "Dpop-Nonce": {nonces.Current()}}, Request: req}
	if retry, err := s.Handle(context.Background(), resp, "tools/list"); !retry || err != nil {
		t.Fatalf("use_dpop_nonce: %v %v", retry, err)
	}
	req = apply()
	if _, err := dpop.NewVerifier(dpop.VerifierOptions{Nonces: nonces}).Verify(req.Header.Get("DPoP"), dpop.Params{Method: "POST", URL: server, AccessToken: "tok", Body: body}); err != nil {
		t.Fatalf("proof with nonce: %v", err)
	}
	// 401 invalid_token on a token that has not expired: refresh, retry
	resp = &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {`DPoP error="invalid_token"`}}, Request: req}
	if retry, err := s.Handle(context.Background(), resp, "tools/list"); !retry || err != nil || refreshes != 1 {
		t.Fatalf("refresh on 401: %v %v (%d refreshes)", retry, err, refreshes)
	}
	if req = apply(); req.Header.Get("Authorization") != "DPoP tok2" {
		t.Fatalf("after refresh: %q", req.Header.Get("Authorization"))
	}
	// a 403 without insufficient_scope is not retried
	resp = &http.Response{StatusCode: 403, Header: http.Header{}, Request: req}
	if retry, _ := s.Handle(context.Background(), resp, "tools/call"); retry {
		t.Fatal("a plain 403 was retried")
	}
}

// TestLoginReRegistersOnInvalidClient: a stored registration the AS no
// longer knows (invalid_client at the token endpoint) is replaced once by
// a fresh Dynamic Client Registration, and the login completes.
func TestLoginReRegistersOnInvalidClient(t *testing.T) {
	var mu sync.Mutex // guards registrations and tokenCalls
	registrations, tokenCalls := 0, 0
	var base string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-protected-resource/mcp":
			json.NewEncoder(w).Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}})
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(map[string]any{"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
				"registration_endpoint": base + "/register", "code_challenge_methods_supported": []string{"S256"}})
		case "/register":
			registrations++
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"client_id":"client-%d","token_endpoint_auth_method":"none"}`, registrations)
		case "/authorize":
			q := r.URL.Query()
			u, _ := url.Parse(q.Get("redirect_uri"))
			v := url.Values{"code": {"c-" + q.Get("client_id")}, "state": {q.Get("state")}}
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.String(), http.StatusFound)
		case "/token":
			tokenCalls++
			r.ParseForm()
			if r.PostForm.Get("client_id") == "client-1" {
				w.WriteHeader(401)
				w.Write([]byte(`{"error":"invalid_client","error_description":"unknown client"}`))
				return
			}
			w.Write([]byte(`{"access_token":"tok","token_type":"Bearer","expires_in":3600}`))
		}
	}))
	defer srv.Close()
	base = srv.URL
	store := newMemStore()
	s := NewCredential(testEngine(base+"/mcp"), store, Config{ServerURL: base + "/mcp", DPoP: "off",
		Interaction: Interaction{Open: func(u string) error {
			go func() {
				if resp, err := http.Get(u); err == nil { // follows the redirect to the callback
					resp.Body.Close()
				}
			}()
			return nil
		}}})
	if err := s.Login(context.Background(), Challenge{}, nil); err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	if registrations != 2 || tokenCalls != 2 || rec.Client.ID != "client-2" || rec.Token.AccessToken != "tok" {
		t.Fatalf("registrations %d, token calls %d, client %q", registrations, tokenCalls, rec.Client.ID)
	}
	if raw, _ := store.Get(ClientKeyOf("default", base)); !strings.Contains(string(raw), "client-2") {
		t.Fatalf("the stored registration was not replaced: %s", raw)
	}
}
