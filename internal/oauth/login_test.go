package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGrantSelection: client credentials wins over the device grant,
// which wins over the default authorization code grant.
func TestGrantSelection(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "authorization_code"},
		{Config{Device: true}, "device"},
		{Config{ClientCredentials: true}, "client_credentials"},
		{Config{ClientCredentials: true, Device: true}, "client_credentials"},
	} {
		if got := c.cfg.grant(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.cfg, got, c.want)
		}
	}
}

// TestSelectScopes: the MCP scope selection order (--scope, challenge,
// PRM scopes_supported) and offline_access only where the AS lists it and
// a refresh token is of use.
func TestSelectScopes(t *testing.T) {
	withOffline := &ServerMetadata{ScopesSupported: []string{"read", "offline_access"}}
	without := &ServerMetadata{ScopesSupported: []string{"read"}}
	prm := &ResourceMetadata{ScopesSupported: []string{"read", "write"}}
	ch := Challenge{Scheme: "Bearer", Params: map[string]string{"scope": "tools:call"}}
	for _, c := range []struct {
		name string
		cfg  Config
		d    Discovery
		ch   Challenge
		want []string
	}{
		{"user scopes win", Config{Scopes: []string{"x"}}, Discovery{AS: withOffline, PRM: prm}, ch, []string{"x"}},
		{"user offline_access kept", Config{Scopes: []string{"offline_access"}}, Discovery{AS: without}, ch, []string{"offline_access"}},
		{"challenge next", Config{}, Discovery{AS: withOffline, PRM: prm}, ch, []string{"tools:call", "offline_access"}},
		{"PRM last", Config{}, Discovery{AS: without, PRM: prm}, Challenge{}, []string{"read", "write"}},
		{"none", Config{}, Discovery{AS: without}, Challenge{}, nil},
		{"no refresh for client credentials", Config{ClientCredentials: true}, Discovery{AS: withOffline}, ch, []string{"tools:call"}},
		{"offline_access dropped where unlisted", Config{}, Discovery{AS: without, PRM: &ResourceMetadata{ScopesSupported: []string{"offline_access", "read"}}}, Challenge{}, []string{"read"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewCredential(testEngine("http://127.0.0.1:9000/mcp"), newMemStore(), c.cfg)
			if got := s.selectScopes(&c.d, c.ch); !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestDPoPKeyChoice: DPoP is used when asked for, or (auto) when the AS
// offers ES256 or the resource requires bound tokens; "on" against an AS
// without ES256 is refused; a new login for the same issuer and resource
// keeps the key.
func TestDPoPKeyChoice(t *testing.T) {
	es256 := &ServerMetadata{Issuer: "http://127.0.0.1:9000", DPoPSigningAlgs: []string{"ES256"}}
	rs256 := &ServerMetadata{Issuer: "http://127.0.0.1:9000", DPoPSigningAlgs: []string{"RS256"}}
	plain := &ServerMetadata{Issuer: "http://127.0.0.1:9000"}
	for _, c := range []struct {
		mode string
		d    Discovery
		use  bool
		err  string
	}{
		{"auto", Discovery{AS: es256}, true, ""},
		{"auto", Discovery{AS: plain}, false, ""},
		{"auto", Discovery{AS: plain, PRM: &ResourceMetadata{DPoPBoundRequired: true}}, true, ""},
		{"off", Discovery{AS: es256}, false, ""},
		{"on", Discovery{AS: plain}, true, ""},
		{"on", Discovery{AS: rs256}, false, "do not include ES256"},
	} {
		s := NewCredential(testEngine("http://127.0.0.1:9000/mcp"), newMemStore(), Config{DPoP: c.mode})
		k, der, err := s.dpopKeyFor(&c.d)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s %v: %v, want %q", c.mode, c.d.AS.DPoPSigningAlgs, err, c.err)
			}
			continue
		}
		if err != nil || (k != nil) != c.use || (len(der) > 0) != c.use {
			t.Errorf("%s %v: key %v, %d bytes, %v", c.mode, c.d.AS.DPoPSigningAlgs, k != nil, len(der), err)
		}
	}
	s := NewCredential(testEngine("http://127.0.0.1:9000/mcp"), newMemStore(), Config{})
	d := &Discovery{AS: es256, Resource: "http://127.0.0.1:9000/mcp"}
	k, der, _ := s.dpopKeyFor(d)
	s.mu.Lock()
	s.adopt(&Record{Issuer: es256.Issuer, Resource: d.Resource, DPoPKey: der})
	s.mu.Unlock()
	if k2, _, _ := s.dpopKeyFor(d); k2 == nil || k2.Thumbprint() != k.Thumbprint() {
		t.Fatal("a new login for the same issuer and resource changed the DPoP key")
	}
	if k3, _, _ := s.dpopKeyFor(&Discovery{AS: es256, Resource: "http://127.0.0.1:9000/other"}); k3.Thumbprint() == k.Thumbprint() {
		t.Fatal("the DPoP key was reused for another resource")
	}
}

// fakeAS is a loopback MCP server's metadata and authorization server
// with a token and a revocation endpoint, recording the forms it got.
type fakeAS struct {
	srv    *httptest.Server
	mu     sync.Mutex // guards forms
	forms  []map[string]string
	revoke func(token string) (int, string) // answer of the revocation endpoint
}

func newFakeAS(t *testing.T) *fakeAS {
	f := &fakeAS{revoke: func(string) (int, string) { return 200, "" }}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := f.srv.URL
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-protected-resource/mcp":
			json.NewEncoder(w).Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}, "scopes_supported": []string{"tools"}})
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(map[string]any{"issuer": base, "token_endpoint": base + "/token", "revocation_endpoint": base + "/revoke",
				"grant_types_supported": []string{"client_credentials"}, "code_challenge_methods_supported": []string{"S256"}})
		case "/token", "/revoke":
			r.ParseForm()
			form := map[string]string{"path": r.URL.Path}
			for k := range r.PostForm {
				form[k] = r.PostForm.Get(k)
			}
			if id, secret, ok := r.BasicAuth(); ok {
				form["basic"] = id + ":" + secret
			}
			f.mu.Lock()
			f.forms = append(f.forms, form)
			n := len(f.forms)
			f.mu.Unlock()
			if r.URL.Path == "/revoke" {
				status, body := f.revoke(form["token"])
				w.WriteHeader(status)
				w.Write([]byte(body))
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + string(rune('0'+n)), "token_type": "Bearer", "expires_in": 60, "scope": "tools"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAS) got() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.forms)
}

// TestClientCredentialsLoginAndRenewal: a client credentials login stores
// its grant, and the expired token is fetched again by the same grant
// (there is no refresh token to use).
func TestClientCredentialsLoginAndRenewal(t *testing.T) {
	f := newFakeAS(t)
	now := time.Now()
	e := testEngine(f.srv.URL + "/mcp")
	e.Now = func() time.Time { return now }
	store := newMemStore()
	cfg := Config{ServerURL: f.srv.URL + "/mcp", ClientCredentials: true, ClientID: "svc", ClientSecret: "s3cret", AuthMethod: "client_secret_basic", DPoP: "off", NonInteractive: true}
	s := NewCredential(e, store, cfg)
	if err := s.Login(context.Background(), Challenge{}, nil); err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	if rec.Grant != "client_credentials" || rec.Token.AccessToken != "at-1" || rec.Client.ID != "svc" {
		t.Fatalf("record %+v", rec)
	}
	forms := f.got()
	if len(forms) != 1 || forms[0]["grant_type"] != "client_credentials" || forms[0]["basic"] != "svc:s3cret" ||
		forms[0]["scope"] != "tools" || forms[0]["resource"] != f.srv.URL+"/mcp" {
		t.Fatalf("token request %v", forms)
	}
	// another process with the same store finds it, and renews it when it expires
	now = now.Add(2 * time.Minute)
	other := NewCredential(e, store, cfg)
	tok, err := other.Token(context.Background())
	if err != nil || tok.AccessToken != "at-2" {
		t.Fatalf("renewal: %v %v", tok, err)
	}
	if forms := f.got(); len(forms) != 2 || forms[1]["grant_type"] != "client_credentials" {
		t.Fatalf("renewal request %v", forms)
	}

	noID := NewCredential(e, newMemStore(), Config{ServerURL: cfg.ServerURL, ClientCredentials: true, DPoP: "off"})
	if err := noID.Login(context.Background(), Challenge{}, nil); err == nil || !strings.Contains(err.Error(), "--client-id") {
		t.Fatalf("client credentials without a client: %v", err)
	}
}

// TestLogout: logout revokes the refresh and access tokens, tolerates an
// AS that does not revoke access tokens (RFC 7009 unsupported_token_type),
// deletes the stored credential even when revocation fails, and reports
// that failure.
func TestLogout(t *testing.T) {
	for _, c := range []struct {
		name    string
		revoke  func(token string) (int, string)
		revoked bool
		err     bool
	}{
		{"revoked", func(string) (int, string) { return 200, "" }, true, false},
		{"access tokens not revocable", func(tok string) (int, string) {
			if tok == "at" {
				return 400, `{"error":"unsupported_token_type"}`
			}
			return 200, ""
		}, true, false},
		{"revocation fails", func(string) (int, string) { return 400, `{"error":"invalid_request"}` }, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeAS(t)
			f.revoke = c.revoke
			server := f.srv.URL + "/mcp"
			store := newMemStore()
			s := NewCredential(testEngine(server), store, Config{ServerURL: server, ClientSecret: "s3cret"})
			rec := &Record{Profile: "default", Server: server, Resource: server, Issuer: f.srv.URL,
				Client: Client{ID: "c", AuthMethod: "client_secret_post"},
				AS:     ServerMetadata{Issuer: f.srv.URL, TokenEndpoint: f.srv.URL + "/token", RevocationEndpoint: f.srv.URL + "/revoke"},
				Token:  Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}
			if err := s.save(rec); err != nil {
				t.Fatal(err)
			}
			if err := s.Load(); err != nil {
				t.Fatal(err)
			}
			revoked, err := s.Logout(context.Background())
			if revoked != c.revoked || (err != nil) != c.err {
				t.Fatalf("revoked %v, err %v", revoked, err)
			}
			var hints []string
			for _, form := range f.got() {
				if form["client_secret"] != "s3cret" {
					t.Errorf("revocation without the configured secret: %v", form)
				}
				hints = append(hints, form["token_type_hint"]+"="+form["token"])
			}
			if !slices.Equal(hints, []string{"refresh_token=rt", "access_token=at"}) {
				t.Fatalf("revocations %v", hints)
			}
			if raw, _ := store.Get(TokenKey("default", f.srv.URL, "c", server)); raw != nil {
				t.Fatal("the credential is still stored")
			}
			if ptr, _ := store.Get(ServerKey("default", server)); ptr != nil {
				t.Fatal("the server pointer is still stored")
			}
			if s.Record() != nil {
				t.Fatal("the session still holds the credential")
			}
			if revoked, err := s.Logout(context.Background()); revoked || err != nil {
				t.Fatalf("second logout: %v %v", revoked, err)
			}
		})
	}
}
