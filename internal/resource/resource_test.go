package resource

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/p256"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

const endpoint = "http://127.0.0.1:8080/mcp"

func newVerifier(t testing.TB, idp *testutil.IdP, mut func(*Options)) *Verifier {
	t.Helper()
	o := Options{Resource: endpoint, Endpoint: endpoint, Issuers: []config.Issuer{{Issuer: idp.Issuer}}, ScopesSupported: []string{"mcp:read"}}
	if mut != nil {
		mut(&o)
	}
	v, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	waitReady(t, v)
	return v
}

func waitReady(t testing.TB, v *Verifier) {
	deadline := time.Now().Add(5 * time.Second)
	for v.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", v.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func req(auth string) *http.Request {
	r := httptest.NewRequest("POST", endpoint, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func TestChallenges(t *testing.T) {
	idp := testutil.NewIdP(t)
	prm := `resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"`
	rows := []struct {
		name string
		dpop string
		err  error
		want []string
	}{
		{"no token", "off", &Error{Status: 401}, []string{`Bearer ` + prm + `, scope="mcp:read"`}},
		{"invalid token", "off", invalidToken(`bad "quoted" \ token`), []string{`Bearer ` + prm + `, scope="mcp:read", error="invalid_token", error_description="bad \"quoted\" \\ token"`}},
		{"insufficient scope", "off", &Error{Status: 403, Code: "insufficient_scope", Scopes: []string{"mcp:read", "mcp:write"}, Description: "needs more"},
			[]string{`Bearer ` + prm + `, scope="mcp:read mcp:write", error="insufficient_scope", error_description="needs more"`}},
		{"no token with DPoP", "optional", &Error{Status: 401}, []string{`Bearer ` + prm + `, scope="mcp:read"`, `DPoP algs="ES256 ES384 RS256 PS256 EdDSA"`}},
		{"DPoP proof error", "required", &Error{Status: 401, Code: "invalid_dpop_proof", Description: "replayed", dpopErr: true},
			[]string{`Bearer ` + prm + `, scope="mcp:read"`, `DPoP algs="ES256 ES384 RS256 PS256 EdDSA", error="invalid_dpop_proof", error_description="replayed"`}},
		{"control characters dropped", "off", invalidToken("a\r\nb"), []string{`Bearer ` + prm + `, scope="mcp:read", error="invalid_token", error_description="ab"`}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			v := newVerifier(t, idp, func(o *Options) { o.DPoP = r.dpop })
			got := v.Challenge(r.err)
			if strings.Join(got, "\n") != strings.Join(r.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(r.want, "\n"))
			}
		})
	}
}

func TestMetadataDocument(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, func(o *Options) {
		o.DPoP = "required"
		o.ScopesSupported = []string{"mcp:read", "offline_access"}
		o.ResourceName, o.ResourceDocumentation = "Files", "https://docs.example.com"
	})
	var m map[string]any
	if err := json.Unmarshal(v.Metadata(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"resource": endpoint, "authorization_servers": `["` + idp.Issuer + `"]`, "scopes_supported": `["mcp:read"]`,
		"bearer_methods_supported": `["header"]`, "resource_name": "Files", "resource_documentation": "https://docs.example.com",
		"dpop_bound_access_tokens_required": "true", "dpop_signing_alg_values_supported": `["ES256","ES384","RS256","PS256","EdDSA"]`,
	}
	for k, w := range want {
		var got string
		switch x := m[k].(type) {
		case string:
			got = x
		default:
			b, _ := json.Marshal(x)
			got = string(b)
		}
		if got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	if v.MetadataURL() != "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp" {
		t.Fatal(v.MetadataURL())
	}
}

func TestPositiveAlgorithmsAndClaims(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, nil)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_ = edKey
	for _, alg := range []string{"RS256", "ES256"} {
		c := idp.Claims("alice", endpoint, "mcp:read mcp:write")
		p, err := v.Authenticate(req("Bearer "+idp.Sign(t, alg, c)), nil)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if p.Subject != "alice" || strings.Join(p.Scopes, " ") != "mcp:read mcp:write" || p.ClientID != "test-client" || len(p.TokenID) != 12 {
			t.Fatalf("%s: %+v", alg, p)
		}
	}
	// scp as an array, audience as an array, client-credentials token without sub.
	c := idp.Claims("", "", "")
	delete(c, "sub")
	delete(c, "scope")
	c["scp"] = []any{"a", "b"}
	c["aud"] = []any{"other", endpoint}
	p, err := v.Authenticate(req("Bearer "+idp.Sign(t, "RS256", c)), nil)
	if err != nil || p.Subject != "client:test-client" || strings.Join(p.Scopes, ",") != "a,b" {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestEdDSAIssuer(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "ed"}}})
	})
	v, err := New(context.Background(), Options{Resource: endpoint, Endpoint: endpoint, Issuers: []config.Issuer{{Issuer: srv.URL, Algorithms: []string{"EdDSA"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitReady(t, v)
	tok := testutil.SignWith(t, jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "ed"}},
		map[string]any{"iss": srv.URL, "sub": "bob", "aud": endpoint, "exp": time.Now().Add(time.Hour).Unix()}, "at+jwt")
	if p, err := v.Authenticate(req("Bearer "+tok), nil); err != nil || p.Subject != "bob" {
		t.Fatalf("EdDSA via OpenID discovery fallback: %v", err)
	}
}

func TestAttackTable(t *testing.T) {
	idp := testutil.NewIdP(t)
	other := testutil.NewIdP(t)
	v := newVerifier(t, idp, func(o *Options) {
		o.Issuers = append(o.Issuers, config.Issuer{Issuer: other.Issuer})
	})
	good := func(mut func(map[string]any)) map[string]any {
		c := idp.Claims("mallory", endpoint, "mcp:read")
		mut(c)
		return c
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign := testutil.SignWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ek, KeyID: "ec1"}}, good(func(map[string]any) {}), "at+jwt")
	rows := map[string]string{
		"alg none":                     "Bearer " + testutil.Unsigned(good(func(map[string]any) {})),
		"HS256 with RSA key bytes":     "Bearer " + idp.HS256WithPublicKey(good(func(map[string]any) {})),
		"missing exp":                  "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { delete(c, "exp") })),
		"expired":                      "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"nbf in future":                "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })),
		"iat in future":                "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })),
		"wrong aud":                    "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["aud"] = "http://127.0.0.1:8080/other" })),
		"no aud":                       "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { delete(c, "aud") })),
		"untrusted iss":                "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["iss"] = "https://evil.example" })),
		"trusted iss, other key":       "Bearer " + other.Sign(t, "RS256", good(func(map[string]any) {})),
		"unknown key same kid":         "Bearer " + foreign,
		"dpop-bound as Bearer":         "Bearer " + idp.Sign(t, "RS256", good(func(c map[string]any) { c["cnf"] = map[string]any{"jkt": "abc"} })),
		"DPoP scheme unbound":          "DPoP " + idp.Sign(t, "RS256", good(func(map[string]any) {})),
		"opaque without introspection": "Bearer opaque-token-value",
		"basic scheme":                 "Basic dXNlcjpwYXNz",
		"empty bearer":                 "Bearer ",
	}
	for name, auth := range rows {
		t.Run(name, func(t *testing.T) {
			_, err := v.Authenticate(req(auth), nil)
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Code == "" {
				t.Fatalf("accepted or unclear: %v", err)
			}
			if tok := strings.TrimPrefix(strings.TrimPrefix(auth, "Bearer "), "DPoP "); len(tok) > 10 && strings.Contains(e.Description, tok) {
				t.Fatal("description leaks the token")
			}
		})
	}
	t.Run("two Authorization headers", func(t *testing.T) {
		r := req("Bearer a.b.c")
		r.Header.Add("Authorization", "Bearer d.e.f")
		if _, err := v.Authenticate(r, nil); err == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("no token", func(t *testing.T) {
		if _, err := v.Authenticate(req(""), nil); !errors.Is(err, ErrNoToken) {
			t.Fatalf("%v", err)
		}
	})
}

func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, nil)
	before := idp.JWKSFetches.Load()
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			tok := testutil.SignWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ek, KeyID: "kid-" + string(rune('a'+i%26))}}, idp.Claims("x", endpoint, ""), "at+jwt")
			v.Authenticate(req("Bearer "+tok), nil)
		})
	}
	wg.Wait()
	if n := idp.JWKSFetches.Load() - before; n > 1 {
		t.Fatalf("%d JWKS fetches for a flood of unknown kids, want at most 1", n)
	}
}

func TestKeyRotationPickedUp(t *testing.T) {
	var current atomic.Pointer[ecdsa.PrivateKey]
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	current.Store(k1)
	var fetches atomic.Int64
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		k := current.Load()
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "k" + string(rune('0'+fetches.Load()%10))}}})
	})
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := New(context.Background(), Options{Resource: endpoint, Endpoint: endpoint, Now: func() time.Time { return time.Unix(0, clock.Load()) },
		Issuers: []config.Issuer{{Issuer: srv.URL, JWKSURI: srv.URL + "/keys", Algorithms: []string{"ES256"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitReady(t, v)
	claims := map[string]any{"iss": srv.URL, "sub": "s", "aud": endpoint, "exp": now.Add(time.Hour).Unix()}
	sign := func(k *ecdsa.PrivateKey, kid string) string {
		return testutil.SignWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, claims, "at+jwt")
	}
	if _, err := v.Authenticate(req("Bearer "+sign(k1, "k1")), nil); err != nil {
		t.Fatal(err)
	}
	// Many requests, one fetch.
	for range 50 {
		v.Authenticate(req("Bearer "+sign(k1, "k1")), nil)
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches for 50 requests", fetches.Load())
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	current.Store(k2)
	clock.Add(int64(11 * time.Second)) // past the refetch interval
	if _, err := v.Authenticate(req("Bearer "+sign(k2, "k2")), nil); err != nil {
		t.Fatalf("rotated key not picked up: %v", err)
	}
}

func TestIntrospection(t *testing.T) {
	var calls atomic.Int64
	var sawAuth atomic.Bool
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "introspection_endpoint": srv.URL + "/introspect"})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if ok && id == "gw" && secret == "s%3Acret" {
			sawAuth.Store(true)
		} else {
			w.WriteHeader(401)
			return
		}
		r.ParseForm()
		switch r.Form.Get("token") {
		case "opaque-good":
			json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "carol", "aud": endpoint, "scope": "mcp:read", "exp": time.Now().Add(time.Hour).Unix(), "client_id": "c"})
		case "opaque-other-aud":
			json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "carol", "aud": "https://other", "exp": time.Now().Add(time.Hour).Unix()})
		default:
			json.NewEncoder(w).Encode(map[string]any{"active": false})
		}
	})
	v, err := New(context.Background(), Options{Resource: endpoint, Endpoint: endpoint, Getenv: func(string) string { return "s:cret" },
		Issuers: []config.Issuer{{Issuer: srv.URL, Introspection: &config.Introspection{ClientID: "gw", ClientSecretEnv: "X"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitReady(t, v)
	for range 3 {
		p, err := v.Authenticate(req("Bearer opaque-good"), nil)
		if err != nil || p.Subject != "carol" || p.Scopes[0] != "mcp:read" {
			t.Fatalf("%+v %v", p, err)
		}
	}
	if calls.Load() != 1 || !sawAuth.Load() {
		t.Fatalf("calls %d (want 1: cached), basic auth %v", calls.Load(), sawAuth.Load())
	}
	for _, tok := range []string{"opaque-other-aud", "opaque-inactive"} {
		if _, err := v.Authenticate(req("Bearer "+tok), nil); err == nil {
			t.Fatalf("%s accepted", tok)
		}
	}
}

func TestDPoPBoundToken(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, func(o *Options) { o.DPoP = "required" })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	c := idp.Claims("dora", endpoint, "mcp:read")
	c["cnf"] = map[string]any{"jkt": jkt}
	tok := idp.Sign(t, "RS256", c)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	mk := func(k *ecdsa.PrivateKey, method, u string, b []byte) *http.Request {
		proof, err := dpop.NewProof(k, "ES256", method, u, dpop.ProofOptions{AccessToken: tok, Body: b, ContentDigest: true})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", endpoint, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", proof)
		return r
	}
	if p, err := v.Authenticate(mk(key, "POST", endpoint, body), body); err != nil || p.JKT != jkt {
		t.Fatalf("valid DPoP: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := map[string]*http.Request{
		"other key":    mk(other, "POST", endpoint, body),
		"other url":    mk(key, "POST", "http://127.0.0.1:8080/other", body),
		"other body":   mk(key, "POST", endpoint, []byte("{}")),
		"other method": mk(key, "GET", endpoint, body),
	}
	for name, r := range cases {
		if _, err := v.Authenticate(r, body); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	replay := mk(key, "POST", endpoint, body)
	v.Authenticate(replay, body)
	if _, err := v.Authenticate(replay, body); err == nil {
		t.Error("replayed proof accepted")
	}
	plain := idp.Sign(t, "RS256", idp.Claims("eve", endpoint, ""))
	if _, err := v.Authenticate(req("Bearer "+plain), nil); err == nil {
		t.Error("Bearer accepted with dpop: required")
	}
}

func FuzzAuthenticate(f *testing.F) {
	idp := testutil.NewIdP(f)
	v := newVerifier(f, idp, nil)
	f.Add("Bearer " + idp.Sign(f, "RS256", idp.Claims("a", endpoint, "")))
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Add("DPoP x")
	f.Fuzz(func(t *testing.T, auth string) {
		r := httptest.NewRequest("POST", endpoint, nil)
		r.Header["Authorization"] = []string{auth}
		p, err := v.Authenticate(r, nil)
		if err == nil && (p.Subject == "" || p.Issuer != idp.Issuer) {
			t.Fatalf("accepted without subject or trusted issuer: %q", auth)
		}
	})
}

func FuzzChallengeQuoting(f *testing.F) {
	idp := testutil.NewIdP(f)
	v := newVerifier(f, idp, nil)
	f.Add(`a"b\c`)
	f.Fuzz(func(t *testing.T, desc string) {
		for _, c := range v.Challenge(invalidToken("%s", desc)) {
			// Every quote inside a value must be escaped: count unescaped quotes.
			n := 0
			for i := 0; i < len(c); i++ {
				if c[i] == '\\' {
					i++
					continue
				}
				if c[i] == '"' {
					n++
				}
				if c[i] < 0x20 {
					t.Fatalf("control character in %q", c)
				}
			}
			if n%2 != 0 {
				t.Fatalf("unbalanced quotes in %q", c)
			}
		}
	})
}

func BenchmarkCachedToken(b *testing.B) {
	idp := testutil.NewIdP(b)
	v := newVerifier(b, idp, nil)
	r := req("Bearer " + idp.Sign(b, "RS256", idp.Claims("a", endpoint, "mcp:read")))
	if _, err := v.Authenticate(r, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(r, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFirstSeen(b *testing.B, alg string) {
	idp := testutil.NewIdP(b)
	v := newVerifier(b, idp, func(o *Options) { o.CacheSize = 1 << 30 })
	toks := make([]*http.Request, 2000)
	for i := range toks {
		toks[i] = req("Bearer " + idp.Sign(b, alg, idp.Claims("a", endpoint, "mcp:read")))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i == len(toks) {
			b.StopTimer()
			v.cache = newTokenCache(1 << 30)
			i = 0
			b.StartTimer()
		}
		if _, err := v.Authenticate(toks[i], nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkFirstSeenES256(b *testing.B) { benchFirstSeen(b, "ES256") }
func BenchmarkFirstSeenRS256(b *testing.B) { benchFirstSeen(b, "RS256") }

// TestES256TablePath: an issuer's P-256 key gets a precomputed table
// (package p256) that a refresh keeps, and tokens verified through it fail
// closed on every tampering; headers go-jose must handle skip it.
func TestES256TablePath(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, nil)
	k := v.issuers[idp.Issuer]
	k.mu.RLock()
	var table *p256.PublicKey
	for _, tb := range k.tables {
		table = tb
	}
	n := len(k.tables)
	k.mu.RUnlock()
	if n != 1 {
		t.Fatalf("the issuer's ES256 key has %d verification tables, want 1", n)
	}
	if err := k.fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	k.mu.RLock()
	kept := false
	for _, tb := range k.tables {
		kept = kept || tb == table
	}
	k.mu.RUnlock()
	if !kept {
		t.Fatal("a refresh rebuilt the table of an unchanged key")
	}

	tok := idp.Sign(t, "ES256", idp.Claims("alice", endpoint, "mcp:read"))
	if c, ok := parseES256(tok); !ok || c.kid != "ec1" || c.typ != "at+jwt" || len(k.lookup("ec1")) != 1 || k.table(k.lookup("ec1")[0].Key.(*ecdsa.PublicKey)) == nil {
		t.Fatal("a plain ES256 token does not take the table path")
	}
	if _, ok := parseES256(critToken(t, idp)); ok {
		t.Fatal("a token with crit takes the table path")
	}
	if p, err := v.Authenticate(req("Bearer "+tok), nil); err != nil || p.Subject != "alice" {
		t.Fatalf("valid ES256 token: %v", err)
	}
	parts := strings.Split(tok, ".")
	forged := idp.Claims("root", endpoint, "mcp:read mcp:admin")
	fb, _ := json.Marshal(forged)
	flip := []byte(parts[2])
	flip[10] ^= 0x01
	rows := map[string]string{
		"payload swapped":      parts[0] + "." + base64.RawURLEncoding.EncodeToString(fb) + "." + parts[2],
		"signature bit flip":   parts[0] + "." + parts[1] + "." + string(flip),
		"signature truncated":  parts[0] + "." + parts[1] + "." + parts[2][:80],
		"signature doubled":    parts[0] + "." + parts[1] + "." + parts[2] + parts[2],
		"signature not base64": parts[0] + "." + parts[1] + "." + "!!" + parts[2][2:],
		"crit header":          critToken(t, idp),
	}
	for name, tok := range rows {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Authenticate(req("Bearer "+tok), nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// critToken re-signs a token with a "crit" header that names an unknown
// extension, which must be refused.
func critToken(t *testing.T, idp *testutil.IdP) string {
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("crit", []string{"x-unknown"}).WithHeader("x-unknown", true)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: idp.EC, KeyID: "ec1"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(idp.Claims("alice", endpoint, "mcp:read"))
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}
