package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestAttackDPoPBoundClientTokenRequestsNeedProof (issue 12 item 1). The
// MCP DPoP profile (ext-auth specification/draft/dpop-extension.mdx, "Client
// Registration Metadata", after RFC 9449 §5.2): "When this field is set to
// true, the authorization server MUST reject token requests from the
// client that do not include a valid DPoP proof."
func TestAttackDPoPBoundClientTokenRequestsNeedProof(t *testing.T) {
	f := newFixture(t, nil)
	reg := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none","dpop_bound_access_tokens":true}`)
	if reg["dpop_bound_access_tokens"] != true {
		t.Errorf("registration does not echo dpop_bound_access_tokens: %v", reg)
	}
	id := reg["client_id"].(string)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	consented := false
	code := func() (url.Values, string) {
		verifier, challenge := pkcePair()
		q := f.authorizeCode(id, "http://127.0.0.1/callback", challenge, "", !consented)
		consented = true
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {q.Get("code")},
			"redirect_uri": {"http://127.0.0.1/callback"}, "code_verifier": {verifier}}, verifier
	}
	proof := func(htu string) string {
		p, _ := dpop.NewProof(key, "ES256", "POST", htu, dpop.ProofOptions{})
		return p
	}
	refusals := []struct {
		name string
		hdr  map[string]string
	}{
		{"no DPoP header", nil},
		{"empty DPoP header", map[string]string{"DPoP": ""}},
		{"proof for another endpoint", map[string]string{"DPoP": proof(f.srv.URL + "/par")}},
		{"not a JWT", map[string]string{"DPoP": "not-a-proof"}},
	}
	for _, tc := range refusals {
		form, _ := code()
		if st, m := f.tokenJSON(form, tc.hdr); st != 400 || m["error"] != "invalid_dpop_proof" || m["access_token"] != nil {
			t.Errorf("%s: %d %v, want 400 invalid_dpop_proof", tc.name, st, m)
		}
	}
	// A refused request leaves the code unused: the client retries with a
	// proof (the refusal is decided before the code is taken).
	form, _ := code()
	if st, _ := f.tokenJSON(form, nil); st != 400 {
		t.Fatalf("no proof: %d", st)
	}
	st, tok := f.tokenJSON(form, map[string]string{"DPoP": proof(f.srv.URL + "/token")})
	if st != 200 || tok["token_type"] != "DPoP" {
		t.Fatalf("the same code with a proof: %d %v", st, tok)
	}
	rform := url.Values{"grant_type": {"refresh_token"}, "client_id": {id}, "refresh_token": {tok["refresh_token"].(string)}}
	if st, m := f.tokenJSON(rform, nil); st != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("refresh without a proof: %d %v", st, m)
	}
	if st, m := f.tokenJSON(rform, map[string]string{"DPoP": proof(f.srv.URL + "/token")}); st != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("refresh with a proof: %d %v", st, m)
	}

	// PAR: a bound client names its key, by a proof or by dpop_jkt.
	_, ch := pkcePair()
	par := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1/callback"}, "code_challenge": {ch},
		"code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}}
	if r, body := f.postForm("/par", par, nil); r.StatusCode != 400 || !jsonHas(body, "error", "invalid_dpop_proof") {
		t.Errorf("PAR of a bound client without proof or dpop_jkt: %d %s", r.StatusCode, body)
	}
	jkt, _ := dpop.Thumbprint(&key.PublicKey)
	withJKT := url.Values{}
	for k, v := range par {
		withJKT[k] = v
	}
	withJKT.Set("dpop_jkt", jkt)
	if r, body := f.postForm("/par", withJKT, nil); r.StatusCode != 201 {
		t.Errorf("PAR with dpop_jkt: %d %s", r.StatusCode, body)
	}
	if r, body := f.postForm("/par", par, map[string]string{"DPoP": proof(f.srv.URL + "/par")}); r.StatusCode != 201 {
		t.Errorf("PAR with a proof: %d %s", r.StatusCode, body)
	}

	// Not a boolean: refused, never taken as "not bound".
	for _, v := range []string{`"true"`, `1`, `null`, `{}`} {
		st, m := f.rawRegister(`{"redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","dpop_bound_access_tokens":`+v+`}`, nil)
		if v == `null` { // JSON null is "omitted" (RFC 7591: absent means false)
			if st != 201 || m["dpop_bound_access_tokens"] != false {
				t.Errorf("dpop_bound_access_tokens null: %d %v", st, m)
			}
			continue
		}
		if st != 400 || m["error"] != "invalid_client_metadata" {
			t.Errorf("dpop_bound_access_tokens %s: %d %v", v, st, m)
		}
	}
	// An unbound client keeps working without DPoP.
	plain := f.register(`{"redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none"}`)
	if plain["dpop_bound_access_tokens"] != false {
		t.Errorf("unbound client: dpop_bound_access_tokens %v", plain["dpop_bound_access_tokens"])
	}
}

func jsonHas(body, key, want string) bool {
	var m map[string]any
	return json.Unmarshal([]byte(body), &m) == nil && m[key] == want
}
