//go:build e2e

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// startBuiltinIntrospected runs mcpgate serve with the built-in server and
// open registration, where the gateway checks opaque tokens by
// introspection at the built-in server with the configured resource-server
// client "rs"; a few registrations per address are allowed.
func startBuiltinIntrospected(t *testing.T) *Gateway {
	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%[1]d
authorization_server: builtin
issuers:
  - issuer: http://127.0.0.1:%[1]d
    introspection:
      client_id: rs
      client_secret_env: RS_SECRET
builtin:
  store: %[2]s
  users_file: %[3]s
  introspection_clients: [rs]
  registration_limits:
    per_address_per_hour: 6
    max_name_chars: 80
  clients:
    - id: rs
      secret_env: RS_SECRET
upstreams:
  - url: %[4]s
    scopes_supported: [mcp:read, mcp:admin]
limits:
  requests_per_second: 200
  burst: 400
`, port, filepath.Join(dir, "as.db"), writeUsers(t, dir), startEverythingHTTP(t, "streamableHttp"))
	file := filepath.Join(dir, "gw.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-builtin-attack", []string{Mcpgate(t), "serve", "--config", file},
		[]string{"RS_SECRET=rs-secret", "MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	return gw
}

func registerRaw(t *testing.T, base, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(base+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func formPost(t *testing.T, c *http.Client, u string, form url.Values, user, pass string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)

func hiddenFields(page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// userTokens signs alice in through the built-in server's pages with a
// public client and returns the token answer.
func userTokens(t *testing.T, base, clientID string) map[string]any {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b := make([]byte, 32)
	rand.Read(b)
	verifier := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(verifier))
	redirect := "http://127.0.0.1/callback"
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"st"}, "scope": {"mcp:read"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(h[:])}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp"}}
	resp, err := c.Get(base + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f := hiddenFields(string(page))
	f.Set("login", "alice")
	f.Set("password", "wonderland")
	r, p := formPost(t, c, base+"/login", f, "", "")
	if r.StatusCode != 302 {
		r, p = formPost(t, c, base+"/consent", hiddenFields(p), "", "")
	}
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != 302 || loc.Query().Get("code") == "" {
		t.Fatalf("sign-in: %d %s %.300s", r.StatusCode, r.Header.Get("Location"), p)
	}
	_, body := formPost(t, c, base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {clientID}}, "", "")
	var tok map[string]any
	if json.Unmarshal([]byte(body), &tok); tok["refresh_token"] == nil {
		t.Fatalf("token: %s", body)
	}
	return tok
}

// TestBuiltinAttackGrants: through the real binary — open registration
// gives no client credentials client (holes 1, 3); a refresh token is not
// an access token, neither at introspection nor at the gateway that
// introspects; a self-registered confidential client may not introspect
// (hole 2, 4); a refresh replay within the grace gets the same answer,
// the next use revokes the family (hole 4); registration metadata and
// rate are bounded (hole 3).
func TestBuiltinAttackGrants(t *testing.T) {
	gw := startBuiltinIntrospected(t)
	base := gw.URL
	registrations := 0

	t.Run("no client credentials for self-registered clients", func(t *testing.T) {
		for _, body := range []string{`{"grant_types":["client_credentials"]}`, `{"grant_types":["client_credentials"],"scope":"mcp:admin"}`,
			`{"grant_types":["authorization_code","client_credentials"],"redirect_uris":["http://127.0.0.1/callback"]}`} {
			if st, out := registerRaw(t, base, body); st != 400 || out["error"] != "invalid_client_metadata" {
				t.Errorf("%s: %d %v", body, st, out)
			}
		}
	})

	st, pub := registerRaw(t, base, `{"client_name":"Attack test","redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`)
	registrations++
	if st != 201 {
		t.Fatalf("register: %d %v", st, pub)
	}
	tok := userTokens(t, base, pub["client_id"].(string))
	rt := tok["refresh_token"].(string)

	t.Run("refresh token is no access token", func(t *testing.T) {
		_, body := formPost(t, http.DefaultClient, base+"/introspect", url.Values{"token": {rt}}, "rs", "rs-secret")
		if strings.TrimSpace(body) != `{"active":false}` {
			t.Fatalf("introspection of a refresh token: %s", body)
		}
		if status, _, b := post(t, gw.Endpoint("/mcp"), "Bearer "+rt, initialize); status != 401 {
			t.Fatalf("refresh token as Bearer at the gateway: %d %s", status, b)
		}
		_, body = formPost(t, http.DefaultClient, base+"/introspect", url.Values{"token": {tok["access_token"].(string)}}, "rs", "rs-secret")
		if !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"token_type":"Bearer"`) {
			t.Fatalf("introspection of the access token: %s", body)
		}
		if status, _, b := post(t, gw.Endpoint("/mcp"), "Bearer "+tok["access_token"].(string), initialize); status != 200 {
			t.Fatalf("access token at the gateway: %d %s", status, b)
		}
	})

	t.Run("self-registered clients may not introspect", func(t *testing.T) {
		st, conf := registerRaw(t, base, `{"redirect_uris":["http://127.0.0.1/callback"]}`)
		registrations++
		if st != 201 {
			t.Fatalf("register: %d %v", st, conf)
		}
		r, body := formPost(t, http.DefaultClient, base+"/introspect", url.Values{"token": {tok["access_token"].(string)}}, conf["client_id"].(string), conf["client_secret"].(string))
		if r.StatusCode != 403 || strings.Contains(body, "active") {
			t.Fatalf("introspection by a self-registered client: %d %s", r.StatusCode, body)
		}
	})

	t.Run("refresh replay gets the same answer once", func(t *testing.T) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub["client_id"].(string)}}
		r1, a := formPost(t, http.DefaultClient, base+"/token", form, "", "")
		r2, b := formPost(t, http.DefaultClient, base+"/token", form, "", "")
		if r1.StatusCode != 200 || r2.StatusCode != 200 || a != b {
			t.Fatalf("replay within the grace: %d %d, same answer %v", r1.StatusCode, r2.StatusCode, a == b)
		}
		if r3, c := formPost(t, http.DefaultClient, base+"/token", form, "", ""); r3.StatusCode != 400 || !strings.Contains(c, "revoked") {
			t.Fatalf("third use: %d %s", r3.StatusCode, c)
		}
		var next map[string]any
		json.Unmarshal([]byte(a), &next)
		form.Set("refresh_token", next["refresh_token"].(string))
		if r4, _ := formPost(t, http.DefaultClient, base+"/token", form, "", ""); r4.StatusCode != 400 {
			t.Fatal("the successor survived a reuse")
		}
	})

	t.Run("registration metadata bounded", func(t *testing.T) {
		for _, body := range []string{
			`{"client_name":"` + strings.Repeat("N", 60<<10) + `","redirect_uris":["http://127.0.0.1/callback"]}`,
			`{"client_name":"` + strings.Repeat("N", 81) + `","redirect_uris":["http://127.0.0.1/callback"]}`,
			`{"client_name":"Official\u202eppa","redirect_uris":["http://127.0.0.1/callback"]}`,
			`{"client_name":"tab\there","redirect_uris":["http://127.0.0.1/callback"]}`,
		} {
			if st, out := registerRaw(t, base, body); st < 400 || st >= 500 || out["error"] != "invalid_client_metadata" {
				t.Errorf("%.60s: %d %v", body, st, out)
			}
		}
	})

	t.Run("registration rate per address", func(t *testing.T) {
		for ; registrations < 6; registrations++ {
			if st, out := registerRaw(t, base, `{"redirect_uris":["http://127.0.0.1/callback"]}`); st != 201 {
				t.Fatalf("registration %d: %d %v", registrations+1, st, out)
			}
		}
		resp, err := http.Post(base+"/register", "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1/callback"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("registration over the limit: %d", resp.StatusCode)
		}
	})
}
