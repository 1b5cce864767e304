package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is the demo's development token issuer: RFC 8414 metadata, a JWKS
// and a client-credentials token endpoint for two demo clients. It exists so
// the demo runs without an identity provider; it is not an authorization
// server for production (no users, no consent) and is only ever bound to
// loopback by `mcpgate demo`.
type Issuer struct {
	URL     string
	key     *ecdsa.PrivateKey
	kid     string
	clients map[string]demoClient
}

type demoClient struct {
	secret string
	scope  string
}

// Client is a demo client's credentials, printed by the demo.
type Client struct{ ID, Secret, Scope string }

// NewIssuer creates an issuer at url with fresh random client secrets.
func NewIssuer(url string) (*Issuer, []Client, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	is := &Issuer{URL: url, key: k, kid: "demo-" + randString(6), clients: map[string]demoClient{}}
	var out []Client
	for _, c := range []Client{{ID: "demo-reader", Scope: "mcp:read"}, {ID: "demo-admin", Scope: "mcp:read mcp:admin"}} {
		c.Secret = randString(18)
		is.clients[c.ID] = demoClient{secret: c.Secret, scope: c.Scope}
		out = append(out, c)
	}
	return is, out, nil
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Handler serves the issuer's endpoints.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks", "token_endpoint": is.URL + "/token",
			"grant_types_supported": []string{"client_credentials"}, "token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
			"scopes_supported": []string{"mcp:read", "mcp:admin"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.key.Public(), KeyID: is.kid, Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /token", is.token)
	return mux
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	c, known := is.clients[id]
	if !ok || !known || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "use the demo client id and secret printed at start (HTTP Basic)"})
		return
	}
	if r.PostFormValue("grant_type") != "client_credentials" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type", "error_description": "the demo issuer supports client_credentials only"})
		return
	}
	resource := r.PostFormValue("resource")
	if resource == "" {
		writeJSON(w, 400, map[string]string{"error": "invalid_target", "error_description": "send resource=<the MCP endpoint URL> (RFC 8707)"})
		return
	}
	scope := c.scope
	if want := r.PostFormValue("scope"); want != "" {
		var granted []string
		for _, s := range strings.Fields(want) {
			if strings.Contains(" "+c.scope+" ", " "+s+" ") {
				granted = append(granted, s)
			}
		}
		scope = strings.Join(granted, " ")
	}
	now := time.Now()
	claims := map[string]any{"iss": is.URL, "sub": id, "client_id": id, "aud": resource, "scope": scope,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": randString(12)}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.key, KeyID: is.kid}}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": "server_error"})
		return
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": "server_error"})
		return
	}
	tok, _ := jws.CompactSerialize()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": scope})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
