package authserver

// Attacks on the built-in server's sign-in path (issue 11, holes 3, 4 and
// 14). Every test here uses only what the server had at 7c040dc, so each
// can be run against it and fails there.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// browserClient is a separate browser: its own cookie jar.
func browserClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// startFlow opens the authorization page for clientID in browser c and
// returns the page and its hidden form fields.
func (f *fixture) startFlow(c *http.Client, clientID, redirect string) (*http.Response, string, url.Values) {
	f.t.Helper()
	_, ch := pkcePair()
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"st"},
		"code_challenge": {ch}, "code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}}
	req, _ := http.NewRequest("GET", f.srv.URL+"/authorize?"+q.Encode(), nil)
	resp, page := do(f.t, c, req)
	return resp, page, formFields(page)
}

func (f *fixture) postLogin(c *http.Client, fields url.Values, user, password string, hdr map[string]string) (*http.Response, string) {
	f.t.Helper()
	form := url.Values{}
	for k, v := range fields {
		form[k] = v
	}
	form.Set("login", user)
	form.Set("password", password)
	req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(f.t, c, req)
}

func (f *fixture) publicClient(name string) string {
	body, _ := json.Marshal(map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none", "client_name": "placeholder"})
	id := f.register(string(body))["client_id"].(string)
	// Registration now refuses such names (registration.go); the pages must
	// still show safely whatever a store holds — clients registered by
	// earlier versions keep their names — so the name is written into the
	// stored record directly.
	raw, err := f.as.cfg.Store.Get("clients", id)
	if err != nil || raw == nil {
		f.t.Fatalf("stored client %s: %v", id, err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		f.t.Fatal(err)
	}
	c["client_name"] = name
	raw, _ = json.Marshal(c)
	if err := f.as.cfg.Store.Put("clients", id, raw, time.Hour); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// heapObjects is the bytes of live and not yet swept heap objects.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestAttackParallelWrongPasswordsStayInHashingBudget: 12 parallel wrong
// passwords (known and unknown users) must not hash 12 × 64 MiB at once.
// The test measures the heap (sampled while the sign-ins run, with the
// collector made eager so the heap tracks what is live), not time: the
// peak above the start stays under 5 × 64 MiB (2 hashing slots, the
// garbage of the previous hash, slack), where 7c040dc reached 12 ×.
func TestAttackParallelWrongPasswordsStayInHashingBudget(t *testing.T) {
	f := newFixture(t, nil)
	id := f.publicClient("App")
	const n = 12
	type try struct {
		c      *http.Client
		fields url.Values
	}
	tries := make([]try, n)
	for i := range tries {
		c := browserClient()
		_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
		tries[i] = try{c, fields}
	}
	f.as.cfg.Users.Check("warm-up", "x") // the dummy hash is made once, outside the measurement
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	base := heapObjects()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heapObjects(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice"
			if i%4 != 0 {
				user = fmt.Sprintf("nobody%d", i) // the dummy hash costs the same
			}
			// few tries per name: the throttle must not be what keeps memory down
			resp, _ := f.postLogin(tries[i].c, tries[i].fields, user, "wrong", nil)
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := (peak.Load() - base) >> 20
	t.Logf("heap peak %d MiB above the start; answers %v", grew, codes)
	if grew >= 5*64 {
		t.Fatalf("%d parallel wrong passwords grew the heap by %d MiB: hashing is not bounded (budget < 320 MiB)", n, grew)
	}
	for _, c := range codes {
		if c != 401 && c != 503 && c != 429 {
			t.Fatalf("answers %v", codes)
		}
	}
}

// TestAttackRepeatedWrongPasswordsAreSlowed: 30 wrong passwords in a row
// for one user from one browser: after a few, each try must wait (429 with
// Retry-After on the login page), on a fake clock, and the wait doubles.
func TestAttackRepeatedWrongPasswordsAreSlowed(t *testing.T) {
	f := newFixture(t, nil)
	id := f.publicClient("App")
	c := browserClient()
	_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
	var codes []int
	var firstWait string
	for range 30 {
		resp, page := f.postLogin(c, fields, "alice", "guess", nil)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && firstWait == "" {
			firstWait = resp.Header.Get("Retry-After")
			if !strings.Contains(page, "Too many failed sign-ins") || !strings.Contains(page, `name="csrf"`) {
				t.Fatalf("throttle page: %.400s", page)
			}
		}
		if nf := formFields(page); nf.Get("csrf") != "" {
			fields = nf
		}
	}
	throttled := 0
	for _, c := range codes {
		if c == 429 {
			throttled++
		}
	}
	if throttled < 25 || firstWait != "1" {
		t.Fatalf("30 wrong passwords in a row: answers %v (first Retry-After %q), want all but the first few 429", codes, firstWait)
	}
	// the right password during the wait is not even checked
	if resp, _ := f.postLogin(c, fields, "alice", "wonderland", nil); resp.StatusCode != 429 {
		t.Fatalf("right password while throttled: %d", resp.StatusCode)
	}
	// after the wait one more try is checked; a wrong one doubles the wait
	f.now = f.now.Add(2 * time.Second)
	if resp, _ := f.postLogin(c, fields, "alice", "guess", nil); resp.StatusCode != 401 {
		t.Fatalf("after the wait: %d", resp.StatusCode)
	}
	resp, _ := f.postLogin(c, fields, "alice", "guess", nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("next wait: %d Retry-After %q, want 429 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// unknown users are throttled the same way (no user enumeration)
	for range 4 {
		f.postLogin(c, fields, "mallory-x", "guess", nil)
	}
	if resp, _ := f.postLogin(c, fields, "mallory-x", "guess", nil); resp.StatusCode != 429 {
		t.Fatalf("unknown user not throttled: %d", resp.StatusCode)
	}
}

// TestAttackLoginCSRFFromAnotherBrowser: the attacker opens the sign-in
// page in their own browser and gets the victim's browser to post it
// (with the attacker's credentials): the victim would be signed in as the
// attacker. A form posted by another browser than the one that loaded it
// is refused, and no session is set.
func TestAttackLoginCSRFFromAnotherBrowser(t *testing.T) {
	f := newFixture(t, nil)
	f.as.cfg.Users.Add("mallory", "attacker-pw")
	id := f.publicClient("App")
	attacker := browserClient()
	_, _, fields := f.startFlow(attacker, id, "http://127.0.0.1/cb")

	cases := map[string]func() *http.Client{
		"victim with no cookies": browserClient,
		"victim with its own binding cookie": func() *http.Client {
			v := browserClient()
			f.startFlow(v, id, "http://127.0.0.1/cb") // the victim's own, unrelated flow
			return v
		},
	}
	for name, victim := range cases {
		t.Run(name, func(t *testing.T) {
			v := victim()
			resp, page := f.postLogin(v, fields, "mallory", "attacker-pw", nil)
			if resp.StatusCode != 403 || strings.Contains(page, `value="consent"`) {
				t.Fatalf("login form from another browser: %d %.300s", resp.StatusCode, page)
			}
			for _, c := range resp.Cookies() {
				if c.Name == sessionCookie {
					t.Fatal("a session cookie was set for the other browser")
				}
			}
		})
	}
	// the attacker's own browser still signs in; its consent form is
	// refused from the victim's browser even with a session for the victim
	resp, page := f.postLogin(attacker, fields, "mallory", "attacker-pw", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
		t.Fatalf("own browser: %d %.300s", resp.StatusCode, page)
	}
	consent := formFields(page)
	v := browserClient()
	_, _, vfields := f.startFlow(v, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(v, vfields, "alice", "wonderland", nil); r.StatusCode != 200 {
		t.Fatalf("victim sign-in: %d", r.StatusCode)
	}
	req, _ := http.NewRequest("POST", f.srv.URL+"/consent", strings.NewReader(consent.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r, _ := do(t, v, req); r.StatusCode != 403 {
		t.Fatalf("the attacker's consent form in the victim's browser: %d", r.StatusCode)
	}
}

// TestAttackFederationCallbackInAnotherBrowser: the provider's answer
// (code and state) of a sign-in the attacker started in their browser,
// followed in the victim's browser, must not sign the victim in.
func TestAttackFederationCallbackInAnotherBrowser(t *testing.T) {
	gh := githubStandIn(t, `{"login":"mallory","id":7}`, `[]`)
	f := newFixture(t, func(c *Config) {
		c.Federation = &Federation{GitHub: true, ClientID: "gh-app", ClientSecret: "gh-secret", GitHubURL: gh.URL, GitHubAPIURL: gh.URL}
	})
	id := f.publicClient("App")
	attacker := browserClient()
	resp, _, _ := f.startFlow(attacker, id, "http://127.0.0.1/cb")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	cb := f.srv.URL + "/federation/callback?" + url.Values{"code": {"gh-code"}, "state": {loc.Query().Get("state")}}.Encode()
	req, _ := http.NewRequest("GET", cb, nil)
	r, page := do(t, browserClient(), req)
	if r.StatusCode != 403 || strings.Contains(page, "mallory") {
		t.Fatalf("callback in another browser: %d %.300s", r.StatusCode, page)
	}
}

func githubStandIn(t *testing.T, user, emails string) *httptest.Server {
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/login/oauth/access_token":
			w.Write([]byte(`{"access_token":"gho_x","token_type":"bearer"}`))
		case "/user":
			w.Write([]byte(user))
		case "/user/emails":
			w.Write([]byte(emails))
		}
	}))
	t.Cleanup(gh.Close)
	return gh
}

// TestAttackClientNameOnPages: a self-registered client's name with bidi
// overrides, isolates, zero-width and control characters reaches the
// login and consent pages only neutralised, the page says the application
// is unverified and shows where the browser returns to.
func TestAttackClientNameOnPages(t *testing.T) {
	names := []string{
		"Claude\u202Eexe.ppa",                 // right-to-left override
		"GitHub\u2066 Official\u2069",         // isolates
		"Goo\u200Bgle",                        // zero-width space
		"Safe\u061C App\u200F",                // Arabic letter mark, RLM
		"Tab\tNew\nLine\x7f",                  // controls
		"VS\u00A0Code",                        // a space that is not one
		"Admin\uFEFFConsole\u2028",            // BOM, line separator
		strings.Repeat("Very long name ", 40), // cut
	}
	for _, name := range names {
		t.Run(fmt.Sprintf("%q", name[:min(len(name), 20)]), func(t *testing.T) {
			f := newFixture(t, nil)
			id := f.publicClient(name)
			_, page, fields := f.startFlow(f.http, id, "http://127.0.0.1/cb")
			checkPage(t, "login", page, name)
			fields.Set("login", "alice")
			fields.Set("password", "wonderland")
			_, consent := f.postForm("/login", fields, nil)
			if !strings.Contains(consent, `value="consent"`) {
				t.Fatalf("no consent page: %.300s", consent)
			}
			checkPage(t, "consent", consent, name)
		})
	}
	// an operator-configured client is not marked
	f := newFixture(t, func(c *Config) {
		c.Clients = append(c.Clients, StaticClient{ID: "desk", Name: "Desk", RedirectURIs: []string{"https://desk.example/cb"}})
	})
	_, page, _ := f.startFlow(f.http, "desk", "https://desk.example/cb")
	if strings.Contains(page, "Unverified application") || !strings.Contains(page, "https://desk.example") {
		t.Fatalf("configured client page: %.600s", page)
	}
}

func checkPage(t *testing.T, which, page, name string) {
	t.Helper()
	for _, r := range "\u202E\u2066\u2069\u200B\u061C\u200F\t\x7f\u00A0\uFEFF\u2028" {
		if strings.ContainsRune(page[strings.Index(page, "<main"):], r) && strings.ContainsRune(name, r) {
			t.Errorf("%s page carries U+%04X from the client name raw", which, r)
		}
	}
	if len(name) > 200 && strings.Contains(page, name) {
		t.Errorf("%s page shows a %d-byte name whole", which, len(name))
	}
	if !strings.Contains(page, "Unverified application") {
		t.Errorf("%s page does not mark the self-registered client unverified", which)
	}
	if !strings.Contains(page, "127.0.0.1") {
		t.Errorf("%s page does not show where the browser returns", which)
	}
}

// oidcStandIn is an OpenID provider for federation tests: discovery, keys
// and a token endpoint answering an ID token with the given claims (and
// the nonce of the last authorization redirect).
type oidcStandIn struct {
	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	claims map[string]any
	nonce  string
}

func newOIDCStandIn(t *testing.T) *oidcStandIn {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o := &oidcStandIn{key: k}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		iss := o.srv.URL
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks"})
		case "/jwks":
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		case "/token":
			c := map[string]any{"iss": iss, "aud": "fed-app", "sub": "u-123", "nonce": o.nonce, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
			for k, v := range o.claims {
				if v == nil {
					delete(c, k)
				} else {
					c[k] = v
				}
			}
			sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, nil)
			payload, _ := json.Marshal(c)
			jws, _ := sig.Sign(payload)
			tok, _ := jws.CompactSerialize()
			json.NewEncoder(w).Encode(map[string]string{"id_token": tok, "token_type": "Bearer", "access_token": "x"})
		}
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// federatedUser runs a federated sign-in with claim as the subject claim
// and returns the callback's status and page.
func federatedUser(t *testing.T, claim string, claims map[string]any) (int, string) {
	o := newOIDCStandIn(t)
	o.claims = claims
	f := newFixture(t, func(c *Config) {
		c.Federation = &Federation{Issuer: o.srv.URL, ClientID: "fed-app", ClientSecret: "s", SubjectClaim: claim}
	})
	f.now = time.Now()
	id := f.publicClient("App")
	resp, _, _ := f.startFlow(f.http, id, "http://127.0.0.1/cb")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	o.nonce = loc.Query().Get("nonce")
	req, _ := http.NewRequest("GET", f.srv.URL+"/federation/callback?"+url.Values{"code": {"c"}, "state": {loc.Query().Get("state")}}.Encode(), nil)
	r, page := do(t, f.http, req)
	return r.StatusCode, page
}

// TestAttackFederationUnverifiedEmail: with subject_claim email, a
// provider account whose email is not verified (anyone can type the
// victim's address into a self-service account) must not become that
// user. Only email_verified true (or the string "true") counts.
func TestAttackFederationUnverifiedEmail(t *testing.T) {
	for _, tc := range []struct {
		name     string
		verified any
		ok       bool
	}{
		{"verified", true, true},
		{"string true", "true", true},
		{"false", false, false},
		{"absent", nil, false},
		{"string false", "false", false},
		{"string TRUE", "TRUE", false},
		{"number 1", 1, false},
		{"string yes", "yes", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := federatedUser(t, "email", map[string]any{"email": "victim@corp.example", "email_verified": tc.verified})
			signedIn := status == 200 && strings.Contains(page, "victim@corp.example") && strings.Contains(page, `value="consent"`)
			if signedIn != tc.ok {
				t.Fatalf("email_verified %v: status %d, signed in %v, want %v\n%.400s", tc.verified, status, signedIn, tc.ok, page)
			}
			if !tc.ok && (status != 403 || !strings.Contains(page, "not verified")) {
				t.Fatalf("refusal is not a clear page: %d %.400s", status, page)
			}
		})
	}
	// the default claim (sub) does not depend on email at all
	if status, page := federatedUser(t, "", map[string]any{"email": "victim@corp.example", "email_verified": false}); status != 200 || !strings.Contains(page, "u-123") {
		t.Fatalf("sub: %d %.300s", status, page)
	}
}

// TestAttackGitHubFederationEmail: GitHub's profile email is whatever the
// user made public; with subject_claim email only the verified primary
// address of /user/emails names the user.
func TestAttackGitHubFederationEmail(t *testing.T) {
	for _, tc := range []struct {
		name, emails, want string
	}{
		{"verified primary", `[{"email":"me@corp.example","primary":true,"verified":true}]`, "me@corp.example"},
		{"unverified primary", `[{"email":"victim@corp.example","primary":true,"verified":false}]`, ""},
		{"verified secondary only", `[{"email":"victim@corp.example","primary":true,"verified":false},{"email":"x@corp.example","primary":false,"verified":true}]`, ""},
		{"none", `[]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gh := githubStandIn(t, `{"login":"octo","id":1,"email":"victim@corp.example"}`, tc.emails)
			f := newFixture(t, func(c *Config) {
				c.Federation = &Federation{GitHub: true, ClientID: "gh-app", ClientSecret: "gh-secret", GitHubURL: gh.URL, GitHubAPIURL: gh.URL, SubjectClaim: "email"}
			})
			id := f.publicClient("App")
			resp, _, _ := f.startFlow(f.http, id, "http://127.0.0.1/cb")
			loc, _ := url.Parse(resp.Header.Get("Location"))
			req, _ := http.NewRequest("GET", f.srv.URL+"/federation/callback?"+url.Values{"code": {"gh-code"}, "state": {loc.Query().Get("state")}}.Encode(), nil)
			r, page := do(t, f.http, req)
			if tc.want != "" {
				if r.StatusCode != 200 || !strings.Contains(page, tc.want) {
					t.Fatalf("%d %.300s", r.StatusCode, page)
				}
				return
			}
			if r.StatusCode == 200 || strings.Contains(page, "victim@corp.example") {
				t.Fatalf("signed in with an unverified address: %d %.300s", r.StatusCode, page)
			}
		})
	}
}
