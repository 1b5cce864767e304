package authserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIssuer is an IdP or workload issuer serving OpenID discovery and a
// JWKS over TLS (httptest's own CA), counting the key set fetches.
type testIssuer struct {
	srv     *httptest.Server
	key     *ecdsa.PrivateKey
	kid     string
	fetches atomic.Int32
}

func newTestIssuer(t *testing.T) *testIssuer {
	ti := &testIssuer{kid: "k1"}
	ti.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ti.key.Public(), KeyID: ti.kid, Algorithm: "ES256", Use: "sig"}}})
	})
	ti.srv = httptest.NewTLSServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *testIssuer) fetch() FetchFunc { return clientFetcher(ti.srv.Client(), false) }

// sign makes a JWT with this issuer's key (kid k1), header typ.
func (ti *testIssuer) sign(t *testing.T, typ string, claims map[string]any) string {
	return signJWT(t, ti.key, jose.ES256, ti.kid, typ, claims)
}

func signJWT(t *testing.T, key crypto.Signer, alg jose.SignatureAlgorithm, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsignedJWT is alg none.
func unsignedJWT(typ string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": typ})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// hmacJWT is HS256 with key (for instance a public key's bytes).
func hmacJWT(t *testing.T, key []byte, typ string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jwt.Signed(s).Claims(claims).Serialize()
	return out
}

func basic(id, secret string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))}
}

func errorOf(body string) (code, desc string) {
	var m map[string]string
	_ = json.Unmarshal([]byte(body), &m)
	return m["error"], m["error_description"]
}

// wantError fails unless the answer is status with error code (and a
// description).
func wantError(t *testing.T, what string, resp *http.Response, body string, status int, code string) {
	t.Helper()
	t.Logf("%s: %d %s", what, resp.StatusCode, strings.TrimSpace(body))
	got, desc := errorOf(body)
	if resp.StatusCode != status || got != code || desc == "" || strings.Contains(body, "access_token") {
		t.Fatalf("%s: %d %s, want %d %s with a description and no token", what, resp.StatusCode, body, status, code)
	}
}

func tokenOf(t *testing.T, what string, resp *http.Response, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &m) != nil || m["access_token"] == nil {
		t.Fatalf("%s: %d %s, want a token", what, resp.StatusCode, body)
	}
	return m
}

func unix(t time.Time) int64 { return t.Unix() }

type httpResponse = http.Response

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func joseSerialize(s jose.Signer, claims any) (string, error) {
	return jwt.Signed(s).Claims(claims).Serialize()
}

type httpRequest = http.Request

// mustFormKID is a parsed request carrying a private_key_jwt assertion of
// client id signed by pf.key with kid.
func mustFormKID(t *testing.T, f *fixture, pf *pkjFixture, id, kid string) *http.Request {
	t.Helper()
	a := signJWT(t, pf.key, jose.ES256, kid, "JWT", pf.assertionClaims(id, nil))
	form := url.Values{"client_assertion_type": {clientAssertionJWT}, "client_assertion": {a}}
	r := httptest.NewRequest("POST", f.srv.URL+"/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := r.ParseForm(); err != nil {
		t.Fatal(err)
	}
	return r
}
