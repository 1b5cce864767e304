//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestClientAttackASRedirectCredentials: the authorization server's token
// and revocation endpoints redirect (301/302/303/307/308) to another port
// of the same host. login and logout must not send the client secret there,
// and logout must not report a revocation that never reached the server.
func TestClientAttackASRedirectCredentials(t *testing.T) {
	var mu sync.Mutex
	var stolen []string
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen = append(stolen, fmt.Sprintf("%s %s Authorization=%q DPoP=%q", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("DPoP")))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"stolen","token_type":"Bearer"}`))
	}))
	defer thief.Close()
	var redirect map[string]int // path -> status
	var base string
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := redirect[r.URL.Path]
		mu.Unlock()
		if st != 0 {
			http.Redirect(w, r, thief.URL+"/steal", st)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		switch r.URL.Path {
		case "/.well-known/oauth-protected-resource/mcp":
			enc.Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}})
		case "/.well-known/oauth-authorization-server":
			enc.Encode(map[string]any{"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
				"registration_endpoint": base + "/register", "revocation_endpoint": base + "/revoke",
				"code_challenge_methods_supported": []string{"S256"}, "authorization_response_iss_parameter_supported": true,
				"token_endpoint_auth_methods_supported": []string{"client_secret_basic"}})
		case "/register":
			w.WriteHeader(201)
			enc.Encode(map[string]any{"client_id": "cid", "client_secret": "CLIENTSECRET", "token_endpoint_auth_method": "client_secret_basic"})
		case "/authorize":
			q := r.URL.Query()
			u, _ := url.Parse(q.Get("redirect_uri"))
			v := u.Query()
			v.Set("code", "c1")
			v.Set("state", q.Get("state"))
			v.Set("iss", base)
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.String(), http.StatusFound)
		case "/token":
			enc.Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt"})
		case "/revoke":
			w.WriteHeader(200)
		case "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		default:
			http.NotFound(w, r)
		}
	}))
	defer as.Close()
	base = as.URL
	c := newCLI(t)
	browser := "curl -s -o /dev/null -L"
	for _, st := range []int{301, 302, 303, 307, 308} {
		mu.Lock()
		redirect = map[string]int{"/token": st}
		mu.Unlock()
		out, errs, code := c.run("login", "--store", "file", "--dpop", "off", "--browser", browser, as.URL+"/mcp")
		if code == 0 || !strings.Contains(errs, "credentials stay on their origin") && !strings.Contains(errs, "makes it a GET") {
			t.Errorf("login, /token %d: exit %d %q %q", st, code, out, errs)
		}
	}
	mu.Lock()
	redirect = nil
	mu.Unlock()
	if out, errs, code := c.run("login", "--store", "file", "--dpop", "off", "--browser", browser, as.URL+"/mcp"); code != 0 {
		t.Fatalf("login without redirects: %d %q %q", code, out, errs)
	}
	mu.Lock()
	redirect = map[string]int{"/revoke": 302}
	mu.Unlock()
	out, errs, code := c.run("logout", "--store", "file", as.URL+"/mcp")
	if code == 0 || strings.Contains(out, "tokens revoked") {
		t.Errorf("logout with /revoke redirected away: exit %d %q %q", code, out, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stolen) > 0 {
		t.Errorf("requests reached the other origin: %v", stolen)
	}
}
