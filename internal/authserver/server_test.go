package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

const resourceID = "https://gw.example/mcp"

type fixture struct {
	t    *testing.T
	srv  *httptest.Server
	as   *Server
	http *http.Client
	now  time.Time
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	users := &Users{}
	users.Add("alice", "wonderland")
	cfg := Config{Resources: []Resource{{ID: resourceID, Scopes: []string{"mcp:read", "mcp:admin"}}}, Users: users, Store: NewMemoryStore(),
		Clients: []StaticClient{{ID: "machine", Secret: "machine-secret", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}}}}
	f := &fixture{t: t, now: time.Now()}
	mux := http.NewServeMux()
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	cfg.Issuer = f.srv.URL
	if mutate != nil {
		mutate(&cfg)
	}
	as, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	as.now = func() time.Time { return f.now }
	f.as = as
	mux.Handle("/", as)
	jar, _ := cookiejar.New(nil)
	f.http = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

func (f *fixture) postForm(path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (f *fixture) register(body string) map[string]any {
	resp, err := http.Post(f.srv.URL+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 201 {
		f.t.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return out
}

var hidden = regexp.MustCompile(`name="(flow|csrf)" value="([^"]+)"`)

func formFields(page string) url.Values {
	v := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	return v
}

func pkcePair() (string, string) {
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(h[:])
}

// authorizeCode runs authorize → login → consent and returns the code.
func (f *fixture) authorizeCode(clientID, redirect, challenge, extra string, consentExpected bool) url.Values {
	f.t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"st"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}}
	resp, err := f.http.Get(f.srv.URL + "/authorize?" + q.Encode() + extra)
	if err != nil {
		f.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 302 {
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return loc.Query()
	}
	fields := formFields(string(page))
	if strings.Contains(string(page), `value="login"`) {
		if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			f.t.Fatalf("login page headers: %v", resp.Header)
		}
		fields.Set("login", "alice")
		fields.Set("password", "wonderland")
		r2, p2 := f.postForm("/login", fields, nil)
		if r2.StatusCode == 302 {
			loc, _ := url.Parse(r2.Header.Get("Location"))
			return loc.Query()
		}
		page = []byte(p2)
		fields = formFields(p2)
	}
	if !strings.Contains(string(page), `value="consent"`) {
		f.t.Fatalf("no consent page: %s", page)
	}
	if !consentExpected {
		f.t.Fatal("consent asked again for approved scopes")
	}
	r3, _ := f.postForm("/consent", fields, nil)
	if r3.StatusCode != 302 {
		f.t.Fatalf("consent: %d", r3.StatusCode)
	}
	loc, _ := url.Parse(r3.Header.Get("Location"))
	return loc.Query()
}

func TestAuthorizationCodeFlowWithDPoPAndRotation(t *testing.T) {
	f := newFixture(t, nil)
	reg := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"client_name":"Test <App>","grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none","application_type":"native"}`)
	id := reg["client_id"].(string)
	if reg["client_secret"] != nil {
		t.Fatal("a public client got a secret")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	verifier, challenge := pkcePair()
	// a loopback redirect with another port is accepted (RFC 8252)
	redirect := "http://127.0.0.1:49152/callback"
	q := f.authorizeCode(id, redirect, challenge, "&dpop_jkt="+jkt, true)
	if q.Get("state") != "st" || q.Get("iss") != f.srv.URL || q.Get("code") == "" {
		t.Fatalf("redirect: %v", q)
	}
	proof := func() string {
		p, _ := dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
		return p
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {id}, "resource": {resourceID}}
	resp, body := f.postForm("/token", form, map[string]string{"DPoP": proof()})
	var tok map[string]any
	json.Unmarshal([]byte(body), &tok)
	if resp.StatusCode != 200 || tok["token_type"] != "DPoP" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	// RFC 9068 claims
	parsed, _ := jwt.ParseSigned(tok["access_token"].(string), []jose.SignatureAlgorithm{jose.ES256})
	if parsed.Headers[0].ExtraHeaders["typ"] != "at+jwt" {
		t.Fatalf("typ: %v", parsed.Headers[0].ExtraHeaders)
	}
	var cl accessClaims
	parsed.UnsafeClaimsWithoutVerification(&cl)
	if cl.Audience[0] != resourceID || cl.Subject != "alice" || cl.ClientID != id || cl.Scope != "mcp:read" || cl.Cnf["jkt"] != jkt || cl.Issuer != f.srv.URL {
		t.Fatalf("claims: %+v", cl)
	}
	// the code is single use
	if resp, _ := f.postForm("/token", form, map[string]string{"DPoP": proof()}); resp.StatusCode != 400 {
		t.Fatalf("code reuse: %d", resp.StatusCode)
	}
	// refresh: bound to the DPoP key, rotated
	rt1 := tok["refresh_token"].(string)
	refresh := func(rt string, withProof bool) (int, map[string]any) {
		h := map[string]string{}
		if withProof {
			h["DPoP"] = proof()
		}
		r, b := f.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}}, h)
		var m map[string]any
		json.Unmarshal([]byte(b), &m)
		return r.StatusCode, m
	}
	if st, _ := refresh(rt1, false); st != 400 {
		t.Fatalf("refresh without the DPoP key: %d", st)
	}
	st, r2 := refresh(rt1, true)
	if st != 200 || r2["refresh_token"] == rt1 {
		t.Fatalf("rotation: %d %v", st, r2)
	}
	// concurrent use within the grace window still works
	if st, _ := refresh(rt1, true); st != 200 {
		t.Fatalf("reuse within grace: %d", st)
	}
	// later reuse revokes the whole family, the newest token included
	f.now = f.now.Add(time.Minute)
	if st, m := refresh(rt1, true); st != 400 || !strings.Contains(m["error_description"].(string), "revoked") {
		t.Fatalf("reuse after grace: %d %v", st, m)
	}
	if st, _ := refresh(r2["refresh_token"].(string), true); st != 400 {
		t.Fatalf("the family survived a reuse: %d", st)
	}
	// consent is remembered: a second authorization skips the page
	_, challenge2 := pkcePair()
	if q := f.authorizeCode(id, redirect, challenge2, "", false); q.Get("code") == "" {
		t.Fatalf("second authorization: %v", q)
	}
}

func TestAuthorizationErrors(t *testing.T) {
	f := newFixture(t, nil)
	id := f.register(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	get := func(q url.Values) *http.Response {
		resp, err := f.http.Get(f.srv.URL + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	base := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"https://app.example/cb"}, "state": {"s"},
			"code_challenge": {"x"}, "code_challenge_method": {"S256"}}
	}
	// unknown client and foreign redirect URIs are shown, never redirected
	q := base()
	q.Set("client_id", "nobody")
	if r := get(q); r.StatusCode != 400 || r.Header.Get("Location") != "" {
		t.Fatalf("unknown client: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	q = base()
	q.Set("redirect_uri", "https://evil.example/cb")
	if r := get(q); r.StatusCode != 400 || r.Header.Get("Location") != "" {
		t.Fatalf("foreign redirect: %d", r.StatusCode)
	}
	for name, mut := range map[string]func(url.Values){
		"invalid_request":           func(q url.Values) { q.Del("code_challenge") },
		"invalid_request ":          func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"invalid_target":            func(q url.Values) { q.Set("resource", "https://other.example/mcp") },
		"invalid_scope":             func(q url.Values) { q.Set("scope", "root") },
		"unsupported_response_type": func(q url.Values) { q.Set("response_type", "token") },
	} {
		q := base()
		mut(q)
		r := get(q)
		loc, _ := url.Parse(r.Header.Get("Location"))
		if r.StatusCode != 302 || loc.Query().Get("error") != strings.TrimSpace(name) || loc.Query().Get("iss") != f.srv.URL || loc.Query().Get("state") != "s" {
			t.Errorf("%s: %d %s", name, r.StatusCode, r.Header.Get("Location"))
		}
	}
	// forged login form (no valid CSRF value) is refused
	if r, _ := f.postForm("/login", url.Values{"flow": {"x"}, "csrf": {"y"}, "login": {"alice"}, "password": {"wonderland"}}, nil); r.StatusCode == 302 || r.StatusCode == 200 {
		t.Fatalf("forged login: %d", r.StatusCode)
	}
	// registration refuses dangerous redirect URIs
	for _, u := range []string{"javascript:alert(1)", "http://app.example/cb", "https://app.example/cb#frag"} {
		resp, _ := http.Post(f.srv.URL+"/register", "application/json", strings.NewReader(`{"redirect_uris":["`+u+`"]}`))
		if resp.StatusCode != 400 {
			t.Errorf("registered %s: %d", u, resp.StatusCode)
		}
		resp.Body.Close()
	}
}

func TestPARRequiredAndClientCredentials(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RequirePAR = true; c.IntrospectionClients = []string{"machine"} })
	id := f.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	_, ch := pkcePair()
	q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1/cb"}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}
	if r, _ := f.http.Get(f.srv.URL + "/authorize?" + q.Encode()); r.StatusCode != 400 {
		t.Fatalf("unpushed request accepted: %d", r.StatusCode)
	}
	resp, body := f.postForm("/par", q, nil)
	var par map[string]any
	json.Unmarshal([]byte(body), &par)
	if resp.StatusCode != 201 || !strings.HasPrefix(par["request_uri"].(string), "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("par: %d %s", resp.StatusCode, body)
	}
	r, _ := f.http.Get(f.srv.URL + "/authorize?" + url.Values{"client_id": {id}, "request_uri": {par["request_uri"].(string)}}.Encode())
	page, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || !strings.Contains(string(page), `value="login"`) {
		t.Fatalf("pushed request: %d", r.StatusCode)
	}
	// request_uri is single use
	if r, _ := f.http.Get(f.srv.URL + "/authorize?" + url.Values{"client_id": {id}, "request_uri": {par["request_uri"].(string)}}.Encode()); r.StatusCode != 400 {
		t.Fatalf("request_uri reuse: %d", r.StatusCode)
	}
	// client credentials
	resp, body = f.postForm("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("machine:machine-secret"))})
	if resp.StatusCode != 200 || strings.Contains(body, "refresh_token") {
		t.Fatalf("client credentials: %d %s", resp.StatusCode, body)
	}
	var tok map[string]any
	json.Unmarshal([]byte(body), &tok)
	// introspection sees it; after revocation it does not
	basic := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("machine:machine-secret"))}
	_, ib := f.postForm("/introspect", url.Values{"token": {tok["access_token"].(string)}}, basic)
	if !strings.Contains(ib, `"active":true`) || !strings.Contains(ib, resourceID) {
		t.Fatalf("introspect: %s", ib)
	}
	f.postForm("/revoke", url.Values{"token": {tok["access_token"].(string)}}, basic)
	if _, ib := f.postForm("/introspect", url.Values{"token": {tok["access_token"].(string)}}, basic); !strings.Contains(ib, `"active":false`) {
		t.Fatalf("introspect after revoke: %s", ib)
	}
	if r, _ := f.postForm("/token", url.Values{"grant_type": {"client_credentials"}}, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("machine:wrong"))}); r.StatusCode != 401 {
		t.Fatalf("wrong secret: %d", r.StatusCode)
	}
}

func TestKeyRotation(t *testing.T) {
	store := NewMemoryStore()
	kr := &keyring{store: store, period: time.Hour, maxLife: 10 * time.Minute}
	if err := kr.load(); err != nil {
		t.Fatal(err)
	}
	first := kr.signer().KID
	if len(kr.jwks().Keys) != 2 {
		t.Fatalf("a next key must be published before it signs: %d keys", len(kr.jwks().Keys))
	}
	next := ""
	for _, k := range kr.keys {
		if k.State == "next" {
			next = k.KID
		}
	}
	kr.mu.Lock()
	kr.rotateLocked(time.Now().Add(2 * time.Hour))
	kr.mu.Unlock()
	if kr.signer().KID != next {
		t.Fatal("the published next key did not take over")
	}
	set := kr.jwks()
	if len(set.Keys) != 3 || len(set.Key(first)) != 1 {
		t.Fatal("the retired key left the JWKS while its tokens are valid")
	}
	kr.mu.Lock()
	kr.rotateLocked(time.Now().Add(2*time.Hour + 20*time.Minute))
	kr.mu.Unlock()
	set = kr.jwks()
	if len(set.Key(first)) != 0 {
		t.Fatal("the retired key stayed after its tokens expired")
	}
	// keys survive a restart
	kr2 := &keyring{store: store, period: time.Hour, maxLife: 10 * time.Minute}
	kr2.load()
	if kr2.signer().KID != next {
		t.Fatal("keys did not survive a reload")
	}
}

func TestUsersAndHashes(t *testing.T) {
	h, _ := HashPassword("s3cret")
	u, err := ParseUsers(strings.NewReader("# team\nbob:" + h + "\ncarol:$2a$10$CwTycUXWue0Thq9StjUM0uJ8.VxzQ4aJ8mnwq5VEH5C5jE4G3xGfK\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !u.Check("bob", "s3cret") || u.Check("bob", "wrong") || u.Check("nobody", "s3cret") {
		t.Fatal("argon2id check")
	}
	if _, err := ParseUsers(strings.NewReader("dave:plaintext\n")); err == nil {
		t.Fatal("a plaintext password was accepted")
	}
}

// TestClientIDMetadataDocuments: an https client_id is fetched (through
// the configured fetcher), must name itself, and is then a public client
// whose redirect URIs are enforced; the SSRF-safe default fetcher refuses
// loopback and private addresses.
func TestClientIDMetadataDocuments(t *testing.T) {
	docs := map[string]string{
		"https://app.example/client.json":  `{"client_id":"https://app.example/client.json","client_name":"CIMD App","redirect_uris":["http://127.0.0.1/cb"]}`,
		"https://evil.example/client.json": `{"client_id":"https://other.example/client.json","redirect_uris":["http://127.0.0.1/cb"]}`,
		"https://app.example/secret.json":  `{"client_id":"https://app.example/secret.json","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`,
	}
	fetches := 0
	f := newFixture(t, func(c *Config) {
		c.FetchClientMetadata = func(_ context.Context, u string) ([]byte, error) {
			fetches++
			d, ok := docs[u]
			if !ok {
				return nil, fmt.Errorf("HTTP 404")
			}
			return []byte(d), nil
		}
	})
	_, ch := pkcePair()
	q := f.authorizeCode("https://app.example/client.json", "http://127.0.0.1:5555/cb", ch, "", true)
	if q.Get("code") == "" {
		t.Fatalf("CIMD client: %v", q)
	}
	_, ch2 := pkcePair()
	f.authorizeCode("https://app.example/client.json", "http://127.0.0.1:5555/cb", ch2, "", false)
	if fetches != 1 {
		t.Fatalf("the document was fetched %d times (cache)", fetches)
	}
	for _, id := range []string{"https://evil.example/client.json", "https://app.example/secret.json", "https://app.example/missing.json", "http://app.example/client.json"} {
		resp, _ := f.http.Get(f.srv.URL + "/authorize?" + url.Values{"client_id": {id}, "redirect_uri": {"http://127.0.0.1/cb"}, "response_type": {"code"},
			"code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode())
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %s", id, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, u := range []string{"https://127.0.0.1/c.json", "https://10.1.2.3/c.json", "https://169.254.169.254/latest"} {
		if _, err := fetchMetadataDocument(context.Background(), u); err == nil || !strings.Contains(err.Error(), "not a public address") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestAttacksFail: look-alike redirect URIs, a wrong PKCE verifier, and a
// consent form without its CSRF value are refused.
func TestAttacksFail(t *testing.T) {
	f := newFixture(t, nil)
	id := f.register(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`)["client_id"].(string)
	_, ch := pkcePair()
	for _, ru := range []string{"https://app.example/cb/../evil", "https://app.example/cb?x=1", "https://app.example.evil/cb", "https://app.example/cbx",
		"http://app.example/cb", "https://APP.example/cb#x"} {
		q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {ru}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}
		resp, _ := f.http.Get(f.srv.URL + "/authorize?" + q.Encode())
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("look-alike redirect %s: %d %s", ru, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// consent without the CSRF value: refused, and no code is issued
	q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"https://app.example/cb"}, "state": {"s"},
		"code_challenge": {ch}, "code_challenge_method": {"S256"}, "resource": {resourceID}}
	resp, _ := f.http.Get(f.srv.URL + "/authorize?" + q.Encode())
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fields := formFields(string(page))
	fields.Set("login", "alice")
	fields.Set("password", "wonderland")
	_, consentPage := f.postForm("/login", fields, nil)
	cf := formFields(consentPage)
	forged := url.Values{"flow": {cf.Get("flow")}, "csrf": {"forged"}}
	if r, _ := f.postForm("/consent", forged, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("consent with a forged CSRF value: %d", r.StatusCode)
	}
	r, _ := f.postForm("/consent", cf, nil)
	loc, _ := url.Parse(r.Header.Get("Location"))
	code := loc.Query().Get("code")
	// a verifier that does not match the challenge (PKCE downgrade) fails
	other, _ := pkcePair()
	if r, b := f.postForm("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example/cb"},
		"code_verifier": {other}, "client_id": {id}}, nil); r.StatusCode != 400 || !strings.Contains(b, "PKCE") {
		t.Fatalf("wrong verifier: %d %s", r.StatusCode, b)
	}
}

// TestGitHubFederation: with provider github, the sign-in goes to GitHub's
// OAuth (an in-repo stand-in here: GitHub cannot be reached offline), the
// code is exchanged with PKCE, and the user is the account's login.
func TestGitHubFederation(t *testing.T) {
	var sawVerifier, sawSecret bool
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login/oauth/access_token":
			r.ParseForm()
			sawVerifier = r.PostForm.Get("code_verifier") != ""
			sawSecret = r.PostForm.Get("client_secret") == "gh-secret" && r.PostForm.Get("code") == "gh-code"
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"gho_x","token_type":"bearer"}`))
		case "/user":
			if r.Header.Get("Authorization") != "Bearer gho_x" {
				w.WriteHeader(401)
				return
			}
			w.Write([]byte(`{"login":"octocat","id":1}`))
		}
	}))
	defer gh.Close()
	f := newFixture(t, func(c *Config) {
		c.Federation = &Federation{GitHub: true, ClientID: "gh-app", ClientSecret: "gh-secret", GitHubURL: gh.URL, GitHubAPIURL: gh.URL}
	})
	id := f.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	_, ch := pkcePair()
	q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1/cb"}, "state": {"s"},
		"code_challenge": {ch}, "code_challenge_method": {"S256"}}
	resp, _ := f.http.Get(f.srv.URL + "/authorize?" + q.Encode())
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Path != "/login/oauth/authorize" || loc.Query().Get("client_id") != "gh-app" ||
		loc.Query().Get("redirect_uri") != f.srv.URL+"/federation/callback" || loc.Query().Get("code_challenge") == "" {
		t.Fatalf("redirect to GitHub: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// GitHub sends the browser back with a code
	cb, _ := f.http.Get(f.srv.URL + "/federation/callback?" + url.Values{"code": {"gh-code"}, "state": {loc.Query().Get("state")}}.Encode())
	page, _ := io.ReadAll(cb.Body)
	cb.Body.Close()
	if !sawVerifier || !sawSecret || !strings.Contains(string(page), "octocat") || !strings.Contains(string(page), `value="consent"`) {
		t.Fatalf("callback: verifier %v secret %v page %.300s", sawVerifier, sawSecret, page)
	}
	// a replayed callback (same state) is refused
	again, _ := f.http.Get(f.srv.URL + "/federation/callback?" + url.Values{"code": {"gh-code"}, "state": {loc.Query().Get("state")}}.Encode())
	again.Body.Close()
	if again.StatusCode != 400 {
		t.Fatalf("replayed federation callback: %d", again.StatusCode)
	}
}
