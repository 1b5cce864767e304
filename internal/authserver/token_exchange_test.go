package authserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const apiResource = "https://api.internal/"

// exchangeFixture is a server with two confidential exchange clients
// (gw, gw2), one with a scope list (narrow), an internal API resource
// and a log buffer.
func exchangeFixture(t *testing.T) (*fixture, *bytes.Buffer) {
	var mu sync.Mutex // guards buf
	buf := &bytes.Buffer{}
	f := newFixture(t, func(c *Config) {
		c.Log = slog.New(slog.NewJSONHandler(&syncWriter{mu: &mu, w: buf}, nil))
		c.Resources[0].Scopes = []string{"mcp:read", "mcp:admin", "orders:read", "orders:write"}
		c.ExchangeResources = []Resource{{ID: apiResource, Scopes: []string{"orders:read", "orders:write"}}}
		c.Clients = append(c.Clients,
			StaticClient{ID: "gw", Secret: "gw-secret", GrantTypes: []string{grantTokenExchange}},
			StaticClient{ID: "gw2", Secret: "gw2-secret", GrantTypes: []string{grantTokenExchange}},
			StaticClient{ID: "narrow", Secret: "narrow-secret", GrantTypes: []string{grantTokenExchange}, Scopes: []string{"orders:read"}},
			StaticClient{ID: "pub", GrantTypes: []string{grantTokenExchange}})
	})
	return f, buf
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// userToken is an access token of the fixture's server for alice.
func userToken(t *testing.T, f *fixture, scopes ...string) string {
	tok, err := f.as.accessToken("app", "alice", resourceID, scopes, "", f.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func exchangeForm(subject string, extra ...string) url.Values {
	v := url.Values{"grant_type": {grantTokenExchange}, "subject_token": {subject}, "subject_token_type": {tokenTypeAccessToken}, "resource": {apiResource}}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			v.Del(extra[i])
		} else {
			v.Add(extra[i], extra[i+1])
		}
	}
	return v
}

// claimsOf decodes a token the fixture's server issued.
func claimsOf(t *testing.T, f *fixture, tok string) *accessClaims {
	cl, ok := f.as.parseAccess(tok)
	if !ok {
		t.Fatalf("not an active token of the server")
	}
	return cl
}

// TestTokenExchangeGrant: the issued token is for the target only, for
// alice, with the exchanging client as client_id and actor, at most the
// subject token's scopes, and no longer-lived than the subject token; a
// second exchange nests the first actor; the exchange is logged.
func TestTokenExchangeGrant(t *testing.T) {
	f, logs := exchangeFixture(t)
	subject := userToken(t, f, "mcp:read", "orders:read")
	st, out := f.tokenJSON(exchangeForm(subject), basicAuth("gw", "gw-secret"))
	if st != 200 || out["issued_token_type"] != tokenTypeAccessToken || out["token_type"] != "Bearer" || out["scope"] != "orders:read" || out["refresh_token"] != nil {
		t.Fatalf("%d %v", st, out)
	}
	cl := claimsOf(t, f, out["access_token"].(string))
	if cl.Subject != "alice" || !slices.Equal([]string(cl.Audience), []string{apiResource}) || cl.ClientID != "gw" ||
		cl.Act == nil || cl.Act.Sub != "gw" || cl.Act.Act != nil || cl.Scope != "orders:read" {
		t.Fatalf("claims %+v act %+v", cl, cl.Act)
	}
	if sub := claimsOf(t, f, subject); cl.Expiry.Time().After(sub.Expiry.Time()) {
		t.Fatalf("the exchanged token outlives the subject token: %v > %v", cl.Expiry.Time(), sub.Expiry.Time())
	}
	// chained: gw2 exchanges gw's token back for the MCP resource
	st, out2 := f.tokenJSON(exchangeForm(out["access_token"].(string), "resource", "", "audience", resourceID), basicAuth("gw2", "gw2-secret"))
	if st != 200 {
		t.Fatalf("%d %v", st, out2)
	}
	cl2 := claimsOf(t, f, out2["access_token"].(string))
	if cl2.Act == nil || cl2.Act.Sub != "gw2" || cl2.Act.Act == nil || cl2.Act.Act.Sub != "gw" || cl2.Subject != "alice" || cl2.Audience[0] != resourceID {
		t.Fatalf("nested act: %+v", cl2.Act)
	}
	if !strings.Contains(logs.String(), `"msg":"token exchanged","client_id":"gw","user":"alice"`) || strings.Contains(logs.String(), subject) {
		t.Fatalf("log: %s", logs.String())
	}
	// the subject token's expiry bounds the exchanged one
	f.now = f.now.Add(9 * time.Minute)
	st, out3 := f.tokenJSON(exchangeForm(subject), basicAuth("gw", "gw-secret"))
	if n, _ := out3["expires_in"].(float64); st != 200 || n > 60 {
		t.Fatalf("%d expires_in %v", st, out3["expires_in"])
	}
}

// TestTokenExchangeAttacks: every refusal, with its RFC 6749/8693 error.
func TestTokenExchangeAttacks(t *testing.T) {
	f, logs := exchangeFixture(t)
	good := userToken(t, f, "mcp:read", "orders:read")
	revoked := userToken(t, f, "orders:read")
	_ = f.as.cfg.Store.Put("revoked", claimsOf(t, f, revoked).ID, []byte("1"), time.Hour) // as /revoke records it
	other, _ := exchangeFixture(t)
	foreign := userToken(t, other, "orders:read") // same issuer name pattern, another key
	idToken := foreignTyp(t, f, "alice")
	f.now = f.now.Add(-11 * time.Minute) // minted 11 minutes ago: past the 10-minute lifetime
	expired := userToken(t, f, "orders:read")
	f.now = f.now.Add(11 * time.Minute)
	deep := good
	for _, c := range []string{"gw", "gw2", "gw", "gw2", "gw"} {
		_, out := f.tokenJSON(exchangeForm(deep, "resource", "", "audience", resourceID), basicAuth(c, c+"-secret"))
		deep, _ = out["access_token"].(string)
	}
	gw := basicAuth("gw", "gw-secret")
	tests := []struct {
		name string
		form url.Values
		auth map[string]string
		st   int
		code string
	}{
		{"expired subject", exchangeForm(expired), gw, 400, "invalid_request"},
		{"revoked subject", exchangeForm(revoked), gw, 400, "invalid_request"},
		{"foreign subject", exchangeForm(foreign), gw, 400, "invalid_request"},
		{"not an access token", exchangeForm(idToken), gw, 400, "invalid_request"},
		{"garbage subject", exchangeForm("eyJhbGciOi.x.y"), gw, 400, "invalid_request"},
		{"no subject", exchangeForm("", "subject_token", ""), gw, 400, "invalid_request"},
		{"two subjects", exchangeForm(good, "subject_token", good), gw, 400, "invalid_request"},
		{"huge subject", exchangeForm(strings.Repeat("a", maxSubjectTokenBytes+1)), gw, 400, "invalid_request"},
		{"wrong subject type", exchangeForm(good, "subject_token_type", "", "subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), gw, 400, "invalid_request"},
		{"actor token", exchangeForm(good, "actor_token", good, "actor_token_type", tokenTypeAccessToken), gw, 400, "invalid_request"},
		{"wrong requested type", exchangeForm(good, "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), gw, 400, "invalid_request"},
		{"chain too long", exchangeForm(deep), gw, 400, "invalid_request"},
		{"unknown resource", exchangeForm(good, "resource", "", "resource", "https://evil.example/"), gw, 400, "invalid_target"},
		{"no target", exchangeForm(good, "resource", ""), gw, 400, "invalid_target"},
		{"two targets", exchangeForm(good, "resource", resourceID), gw, 400, "invalid_target"},
		{"resource and audience differ", exchangeForm(good, "audience", resourceID), gw, 400, "invalid_target"},
		{"scope escalation", exchangeForm(good, "scope", "orders:write"), gw, 400, "invalid_scope"},
		{"scope of another resource", exchangeForm(good, "scope", "mcp:read"), gw, 400, "invalid_scope"},
		{"no common scope", exchangeForm(userToken(t, f, "mcp:read")), gw, 400, "invalid_scope"},
		{"client's scope list", exchangeForm(userToken(t, f, "orders:write")), basicAuth("narrow", "narrow-secret"), 400, "invalid_scope"},
		{"public client", exchangeForm(good, "client_id", "pub"), nil, 400, "unauthorized_client"},
		{"client without the grant", exchangeForm(good), basicAuth("machine", "machine-secret"), 400, "unauthorized_client"},
		{"wrong secret", exchangeForm(good), basicAuth("gw", "nope"), 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, out := f.tokenJSON(tc.form, tc.auth)
			desc, _ := out["error_description"].(string)
			if st != tc.st || out["error"] != tc.code || desc == "" || out["access_token"] != nil {
				t.Fatalf("%d %v, want %d %s", st, out, tc.st, tc.code)
			}
		})
	}
	if st, out := f.tokenJSON(exchangeForm(good), basicAuth("narrow", "narrow-secret")); st != 200 || out["scope"] != "orders:read" {
		t.Fatalf("narrow client: %d %v", st, out)
	}
	if !strings.Contains(logs.String(), `"msg":"token exchange refused"`) || strings.Contains(logs.String(), good) {
		t.Fatal("refusals are not logged, or the log holds a token")
	}
}

// foreignTyp is a JWT signed with the server's key that is not an access
// token (typ JWT): it must not pass as a subject token.
func foreignTyp(t *testing.T, f *fixture, sub string) string {
	k := f.as.keys.signer()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.KID))
	if err != nil {
		t.Fatal(err)
	}
	now := f.now
	tok, err := jwt.Signed(signer).Claims(accessClaims{Claims: jwt.Claims{Issuer: f.as.cfg.Issuer, Subject: sub, Audience: jwt.Audience{resourceID},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}, Scope: "orders:read"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenExchangeMetadata: the grant is advertised.
func TestTokenExchangeMetadata(t *testing.T) {
	f, _ := exchangeFixture(t)
	resp, err := f.http.Get(f.srv.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Grants []string `json:"grant_types_supported"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if !slices.Contains(m.Grants, grantTokenExchange) {
		t.Fatalf("grant_types_supported %v", m.Grants)
	}
}
