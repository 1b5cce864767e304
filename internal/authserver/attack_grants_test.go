package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// rawRegister posts a registration and returns the status and the decoded
// answer.
func (f *fixture) rawRegister(body string, hdr map[string]string) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+"/register", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func basicAuth(id, secret string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))}
}

func (f *fixture) tokenJSON(form url.Values, hdr map[string]string) (int, map[string]any) {
	f.t.Helper()
	r, b := f.postForm("/token", form, hdr)
	var m map[string]any
	json.Unmarshal([]byte(b), &m)
	return r.StatusCode, m
}

// TestAttackOpenRegistrationNoClientCredentials (hole 1): with open
// registration nobody gets a client with the client credentials grant,
// whatever else the registration says; so no token without a user.
func TestAttackOpenRegistrationNoClientCredentials(t *testing.T) {
	f := newFixture(t, nil)
	for _, body := range []string{
		`{"grant_types":["client_credentials"]}`,
		`{"grant_types":["client_credentials"],"scope":"mcp:admin"}`,
		`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_post"}`,
		`{"grant_types":["authorization_code","client_credentials"],"redirect_uris":["https://app.example/cb"]}`,
		`{"grant_types":["client_credentials","client_credentials"]}`,
	} {
		st, out := f.rawRegister(body, nil)
		if st != 400 || out["error"] != "invalid_client_metadata" || !strings.Contains(out["error_description"].(string), "grant_types") {
			t.Errorf("%s: %d %v", body, st, out)
		}
		if id, _ := out["client_id"].(string); id != "" {
			secret, _ := out["client_secret"].(string)
			st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, basicAuth(id, secret))
			t.Errorf("%s: token %d %v", body, st, tok)
		}
	}
}

// TestAttackClientCredentialsScopes (hole 1): with the initial access
// token and an operator list, a registered client gets only listed scopes;
// a client stored before (or registered openly) gets none; a configured
// client gets its own scopes, never the resource's others.
func TestAttackClientCredentialsScopes(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.RegistrationToken = "iat-secret"
		c.RegistrationClientCredentialsScopes = []string{"mcp:read"}
	})
	iat := map[string]string{"Authorization": "Bearer iat-secret"}
	if st, out := f.rawRegister(`{"grant_types":["client_credentials"],"scope":"mcp:admin"}`, iat); st != 400 || !strings.Contains(out["error_description"].(string), "scope") {
		t.Fatalf("registered client asked for an unlisted scope: %d %v", st, out)
	}
	if st, out := f.rawRegister(`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}`, iat); st != 400 {
		t.Fatalf("public client with client credentials: %d %v", st, out)
	}
	st, reg := f.rawRegister(`{"grant_types":["client_credentials"]}`, iat)
	if st != 201 || reg["scope"] != "mcp:read" {
		t.Fatalf("registration with the initial access token: %d %v", st, reg)
	}
	auth := basicAuth(reg["client_id"].(string), reg["client_secret"].(string))
	st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, auth)
	if st != 200 || tok["scope"] != "mcp:read" {
		t.Fatalf("client credentials token: %d %v", st, tok)
	}
	for _, sc := range []string{"mcp:admin", "mcp:read mcp:admin", "openid mcp:admin"} {
		if st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}, "scope": {sc}}, auth); st != 400 {
			t.Errorf("scope %q: %d %v", sc, st, tok)
		}
	}
	// a client registered openly by an older version, with the grant and
	// an admin scope, is stored: it still gets nothing
	old := client{ID: "legacy", SecretHash: hashToken("legacy-secret"), GrantTypes: []string{"client_credentials"}, AuthMethod: "client_secret_basic",
		Scopes: []string{"mcp:admin", "mcp:read"}, Kind: "dcr"}
	raw, _ := json.Marshal(old)
	f.as.cfg.Store.Put("clients", "legacy", raw, 0)
	if st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, basicAuth("legacy", "legacy-secret")); st == 200 {
		t.Fatalf("a stored self-registered client got a token: %v", tok)
	}
	// the configured machine client (scopes [mcp:read]) gets mcp:read, not mcp:admin
	if st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, basicAuth("machine", "machine-secret")); st != 200 || tok["scope"] != "mcp:read" {
		t.Fatalf("configured client: %d %v", st, tok)
	}
	// a configured client with the grant and no scopes is a configuration error
	_, err := New(Config{Issuer: "https://as.example", Store: NewMemoryStore(), Resources: []Resource{{ID: resourceID, Scopes: []string{"mcp:admin"}}},
		Clients: []StaticClient{{ID: "m", Secret: "s", GrantTypes: []string{"client_credentials"}}}})
	if err == nil || !strings.Contains(err.Error(), "no scopes") {
		t.Fatalf("client credentials client without scopes: %v", err)
	}
}

// TestAttackCodeGrantWithoutScope (hole 1): an authorization request that
// names no scope gets DefaultScopes (default none), not every scope of the
// resource.
func TestAttackCodeGrantWithoutScope(t *testing.T) {
	for _, tc := range []struct {
		defaults []string
		want     string
	}{{nil, ""}, {[]string{"mcp:read", "other"}, "mcp:read"}} {
		f := newFixture(t, func(c *Config) { c.DefaultScopes = tc.defaults })
		id := f.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
		c, _ := f.as.lookup(t.Context(), id)
		res, _ := f.as.resource("")
		got, msg := f.as.scopes(c, res, nil)
		if msg != "" || strings.Join(got, " ") != tc.want {
			t.Errorf("defaults %v: scopes %v %s", tc.defaults, got, msg)
		}
	}
}

// codeTokens runs a code flow for a registered client and returns the
// token answer.
func (f *fixture) codeTokens(id string, auth map[string]string, key *ecdsa.PrivateKey) map[string]any {
	f.t.Helper()
	verifier, challenge := pkcePair()
	q := f.authorizeCode(id, "http://127.0.0.1/callback", challenge, "", true)
	hdr := map[string]string{}
	for k, v := range auth {
		hdr[k] = v
	}
	if key != nil {
		p, _ := dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
		hdr["DPoP"] = p
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {"http://127.0.0.1/callback"}, "code_verifier": {verifier}}
	if auth == nil {
		form.Set("client_id", id)
	}
	st, tok := f.tokenJSON(form, hdr)
	if st != 200 {
		f.t.Fatalf("code exchange: %d %v", st, tok)
	}
	return tok
}

// TestAttackIntrospectionForResourceServersOnly (holes 2 and 4): a refresh
// token is never active at introspection, access tokens say their type,
// and a self-registered confidential client may not introspect at all.
func TestAttackIntrospectionForResourceServersOnly(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.IntrospectionClients = []string{"machine"} })
	reg := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"]}`)
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := f.codeTokens(id, basicAuth(id, secret), key)
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	rs := basicAuth("machine", "machine-secret")
	introspect := func(token string, auth map[string]string) (int, map[string]any) {
		r, b := f.postForm("/introspect", url.Values{"token": {token}}, auth)
		var m map[string]any
		json.Unmarshal([]byte(b), &m)
		return r.StatusCode, m
	}
	if st, m := introspect(rt, rs); st != 200 || m["active"] != false || len(m) != 1 {
		t.Fatalf("refresh token at introspection: %d %v", st, m)
	}
	if st, m := introspect(at, rs); st != 200 || m["active"] != true || m["token_type"] != "DPoP" || m["cnf"] == nil {
		t.Fatalf("DPoP access token at introspection: %d %v", st, m)
	}
	// the self-registered confidential client may not introspect, its own
	// token or anyone's
	for _, tk := range []string{at, rt, "junk"} {
		if st, m := introspect(tk, basicAuth(id, secret)); st != 403 || m["active"] != nil {
			t.Errorf("self-registered client introspected: %d %v", st, m)
		}
	}
	// with introspection_clients set, other configured clients may not
	f2 := newFixture(t, func(c *Config) {
		c.Clients = append(c.Clients, StaticClient{ID: "rs", Secret: "rs-secret"})
		c.IntrospectionClients = []string{"rs"}
	})
	if st, _ := f2.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, basicAuth("machine", "machine-secret")); st != 200 {
		t.Fatal("machine token")
	}
	r, _ := f2.postForm("/introspect", url.Values{"token": {"x"}}, basicAuth("machine", "machine-secret"))
	r2, _ := f2.postForm("/introspect", url.Values{"token": {"x"}}, basicAuth("rs", "rs-secret"))
	if r.StatusCode != 403 || r2.StatusCode != 200 {
		t.Fatalf("introspection_clients: machine %d, rs %d", r.StatusCode, r2.StatusCode)
	}
	if _, err := New(Config{Issuer: "https://as.example", Store: NewMemoryStore(), IntrospectionClients: []string{"nobody"}}); err == nil {
		t.Fatal("an unknown introspection client was accepted")
	}
}

// TestAttackDPoPBoundRefreshNeedsProof (hole 2): a refresh token issued
// with a DPoP proof — to a confidential client too — is refused without a
// proof by that key, and refusing it does not use it up.
func TestAttackDPoPBoundRefreshNeedsProof(t *testing.T) {
	f := newFixture(t, nil)
	reg := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"]}`)
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	auth := basicAuth(id, secret)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := f.codeTokens(id, auth, key)["refresh_token"].(string)
	proof := func(k *ecdsa.PrivateKey) string {
		p, _ := dpop.NewProof(k, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
		return p
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	if st, m := f.tokenJSON(form, auth); st != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("DPoP-bound refresh token without a proof: %d %v", st, m)
	}
	h := basicAuth(id, secret)
	h["DPoP"] = proof(other)
	if st, m := f.tokenJSON(form, h); st != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("DPoP-bound refresh token with another key: %d %v", st, m)
	}
	h["DPoP"] = proof(key)
	if st, m := f.tokenJSON(form, h); st != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("refresh with its key: %d %v", st, m)
	}
}

// TestAttackRefreshReplayGetsSameAnswer (hole 4): a second use within the
// grace returns the identical answer once, a third use revokes the
// family, the successor included.
func TestAttackRefreshReplayGetsSameAnswer(t *testing.T) {
	f := newFixture(t, nil)
	id := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	rt := f.codeTokens(id, nil, nil)["refresh_token"].(string)
	refresh := func(tok string) (int, string) {
		r, b := f.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}, "client_id": {id}}, nil)
		return r.StatusCode, b
	}
	st1, first := refresh(rt)
	st2, replay := refresh(rt)
	if st1 != 200 || st2 != 200 || first != replay {
		t.Fatalf("replay within the grace: %d %s / %d %s", st1, first, st2, replay)
	}
	if st, b := refresh(rt); st != 400 || !strings.Contains(b, "revoked") {
		t.Fatalf("third use within the grace: %d %s", st, b)
	}
	var m map[string]any
	json.Unmarshal([]byte(first), &m)
	if st, _ := refresh(m["refresh_token"].(string)); st != 400 {
		t.Fatal("the successor survived a reuse")
	}
	// the stored record does not hold the successor in the clear
	rt2 := f.codeTokens(id, nil, nil)["refresh_token"].(string)
	_, ans := refresh(rt2)
	raw, _ := f.as.cfg.Store.Get("refresh", hashToken(rt2))
	json.Unmarshal([]byte(ans), &m)
	if raw == nil || strings.Contains(string(raw), m["refresh_token"].(string)) || strings.Contains(string(raw), m["access_token"].(string)) {
		t.Fatalf("the rotated answer is stored in the clear: %s", raw)
	}
}

// TestAttackRevokeOnlyOwnTokens: RFC 7009 revocation by another client
// leaves the tokens alive.
func TestAttackRevokeOnlyOwnTokens(t *testing.T) {
	f := newFixture(t, nil)
	id := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	other := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"]}`)
	tok := f.codeTokens(id, nil, nil)
	for _, tk := range []string{tok["refresh_token"].(string), tok["access_token"].(string)} {
		f.postForm("/revoke", url.Values{"token": {tk}}, basicAuth(other["client_id"].(string), other["client_secret"].(string)))
		f.postForm("/revoke", url.Values{"token": {tk}, "client_id": {"machine"}}, nil)
		f.postForm("/revoke", url.Values{"token": {tk}}, basicAuth("machine", "machine-secret"))
	}
	if _, ok := f.as.parseAccess(tok["access_token"].(string)); !ok {
		t.Fatal("another client revoked the access token")
	}
	if st, _ := f.tokenJSON(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {id}}, nil); st != 200 {
		t.Fatal("another client revoked the refresh token")
	}
}

// TestAttackRegistrationMetadataLimits (hole 3): oversized and deceptive
// metadata is refused with invalid_client_metadata naming the field.
func TestAttackRegistrationMetadataLimits(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RegistrationLimits.PerAddressPerHour, c.RegistrationLimits.PerHour = 1000, 1000 })
	long := strings.Repeat("A", 60<<10)
	many := `"https://a.example/1"` + strings.Repeat(`,"https://a.example/1"`, 10)
	for body, field := range map[string]string{
		`{"client_name":"` + long + `","redirect_uris":["https://a.example/cb"]}`:                       "",
		`{"client_name":"` + strings.Repeat("é", 101) + `","redirect_uris":["https://a.example/cb"]}`:   "client_name",
		`{"client_name":"Good\u202eevil","redirect_uris":["https://a.example/cb"]}`:                     "client_name",
		`{"client_name":"Good\u2066x\u2069","redirect_uris":["https://a.example/cb"]}`:                  "client_name",
		`{"client_name":"a\u200bdmin","redirect_uris":["https://a.example/cb"]}`:                        "client_name",
		`{"client_name":"line\nbreak","redirect_uris":["https://a.example/cb"]}`:                        "client_name",
		`{"client_name":"nul\u0000","redirect_uris":["https://a.example/cb"]}`:                          "client_name",
		`{"client_name":"c1\u009b31m","redirect_uris":["https://a.example/cb"]}`:                        "client_name",
		`{"client_name":"sep\u2028","redirect_uris":["https://a.example/cb"]}`:                          "client_name",
		`{"redirect_uris":[` + many + `]}`:                                                              "redirect_uris",
		`{"redirect_uris":["https://a.example/` + strings.Repeat("x", 1100) + `"]}`:                     "redirect_uris[0]",
		`{"redirect_uris":["https://a.example/cb"],"logo_uri":"https://a.example/` + long[:2000] + `"}`: "logo_uri",
		`{"redirect_uris":["https://a.example/cb"],"scope":"` + strings.Repeat("s ", 600) + `"}`:        "scope",
		`{"redirect_uris":["https://a.example/cb"],"scope":"a\u00e9"}`:                                  "scope",
		`{"redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code","x","y","z"]}`:   "grant_types",
		`{"redirect_uris":["https://a.example/cb"],"contacts":["a","b","c","d","e","f"]}`:               "contacts",
		`{"redirect_uris":["https://a.example/cb"],"software_id":"x\u202e"}`:                            "software_id",
		`{"redirect_uris":["https://a.example/c b"]}`:                                                   "redirect_uris[0]",
		"{\"client_name\":\"bad \xff utf8\",\"redirect_uris\":[\"https://a.example/cb\"]}":              "UTF-8",
	} {
		st, out := f.rawRegister(body, nil)
		desc, _ := out["error_description"].(string)
		if st < 400 || out["error"] != "invalid_client_metadata" || field != "" && !strings.Contains(desc, field) {
			t.Errorf("%.80s: %d %v", body, st, out)
		}
	}
	// ordinary names pass, non-Latin scripts and emoji included
	for _, name := range []string{"Claude Desktop", "Cursor — AI editor", "日本語クライアント", "Ünïcödé app 🚀"} {
		if st, out := f.rawRegister(`{"client_name":"`+name+`","redirect_uris":["https://a.example/cb"]}`, nil); st != 201 {
			t.Errorf("%s: %d %v", name, st, out)
		}
	}
	// a metadata document's name is held to the same rules
	f2 := newFixture(t, func(c *Config) {
		c.FetchClientMetadata = func(_ context.Context, u string) ([]byte, error) {
			return []byte(`{"client_id":"` + u + `","client_name":"Trusted\u202eppa","redirect_uris":["http://127.0.0.1/cb"]}`), nil
		}
	})
	if _, err := f2.as.lookup(t.Context(), "https://app.example/c.json"); err == nil || !strings.Contains(err.Error(), "client_name") {
		t.Fatalf("metadata document with a bidi override: %v", err)
	}
}

// TestAttackRegistrationRateLimits (hole 3): per address, then in total.
func TestAttackRegistrationRateLimits(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RegistrationLimits.PerAddressPerHour, c.RegistrationLimits.PerHour = 3, 5 })
	body := `{"redirect_uris":["https://a.example/cb"]}`
	for i := 0; i < 3; i++ {
		if st, out := f.rawRegister(body, nil); st != 201 {
			t.Fatalf("registration %d: %d %v", i, st, out)
		}
	}
	// refused registrations do not use the budget up
	f.as.reg.perAddr = 4
	f.rawRegister(`{"redirect_uris":["javascript:x"]}`, nil)
	if st, _ := f.rawRegister(body, nil); st != 201 {
		t.Fatalf("a refused registration counted: %d", st)
	}
	st, out := f.rawRegister(body, nil)
	if st != 429 || out["error"] != "temporarily_unavailable" {
		t.Fatalf("over the per-address limit: %d %v", st, out)
	}
	// other addresses count towards the total
	lim := f.as.reg
	now := time.Now()
	if rel, _ := lim.reserve("192.0.2.1", now); rel == nil {
		t.Fatal("another address refused")
	}
	if rel, _ := lim.reserve("192.0.2.2", now); rel != nil {
		t.Fatal("over the total limit")
	}
	if rel, _ := lim.reserve("192.0.2.2", now.Add(61*time.Minute)); rel == nil {
		t.Fatal("the window did not move")
	}
	// IPv6 addresses of one /64 are one address
	r1, _ := http.NewRequest("POST", "/", nil)
	r1.RemoteAddr = "[2001:db8:1:2:aaaa::1]:5000"
	r2, _ := http.NewRequest("POST", "/", nil)
	r2.RemoteAddr = "[2001:db8:1:2:bbbb::2]:5000"
	if registrationAddress(r1) != registrationAddress(r2) {
		t.Fatal("one /64 counted as two addresses")
	}
}

// TestAttackRegisteredClientsCappedAndExpire (hole 3): at most MaxClients
// registered clients (in each store); a client that never completes a
// grant expires, one that does stays; Sweep removes what expired.
func TestAttackRegisteredClientsCappedAndExpire(t *testing.T) {
	bolt, err := OpenBolt(filepath.Join(t.TempDir(), "as.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	for name, st := range map[string]Store{"memory": NewMemoryStore(), "bolt": bolt} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				c.Store = st
				c.RegistrationToken = "iat"
				c.RegistrationClientCredentialsScopes = []string{"mcp:read"}
				c.RegistrationLimits = RegistrationLimits{MaxClients: 3, UnusedClientTTL: 300 * time.Millisecond, PerAddressPerHour: 100, PerHour: 100}
			})
			iat := map[string]string{"Authorization": "Bearer iat"}
			var regs []map[string]any
			for i := 0; i < 3; i++ {
				s, out := f.rawRegister(`{"grant_types":["client_credentials"]}`, iat)
				if s != 201 {
					t.Fatalf("registration %d: %d %v", i, s, out)
				}
				regs = append(regs, out)
			}
			if s, out := f.rawRegister(`{"grant_types":["client_credentials"]}`, iat); s != 503 || out["error"] != "temporarily_unavailable" {
				t.Fatalf("over the cap: %d %v", s, out)
			}
			// the first client completes a grant: it is kept
			used := basicAuth(regs[0]["client_id"].(string), regs[0]["client_secret"].(string))
			if s, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, used); s != 200 {
				t.Fatalf("token: %d %v", s, tok)
			}
			time.Sleep(400 * time.Millisecond)
			if s, _ := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, used); s != 200 {
				t.Fatal("a used client expired")
			}
			unused := basicAuth(regs[1]["client_id"].(string), regs[1]["client_secret"].(string))
			if s, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, unused); s != 401 {
				t.Fatalf("an unused client outlived its expiry: %d %v", s, tok)
			}
			// expired clients leave room under the cap
			if s, out := f.rawRegister(`{"grant_types":["client_credentials"]}`, iat); s != 201 {
				t.Fatalf("registration after expiry: %d %v", s, out)
			}
			st.Put("flows", "old", []byte("x"), time.Millisecond)
			time.Sleep(5 * time.Millisecond)
			if n, err := f.as.Sweep(); err != nil || n < 1 {
				t.Fatalf("sweep: %d %v", n, err)
			}
		})
	}
}
