package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestTokenEndpointSharedReplayFailsClosed: with the jti store in Redis
// (state.redis) the token endpoint accepts a proof once and refuses its
// replay; with Redis stopped it refuses every proof with 503
// temporarily_unavailable and Retry-After — never a token — and accepts
// again once Redis is back.
func TestTokenEndpointSharedReplayFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	rs, err := state.Open(config.Redis{URL: srv.URL(), KeyPrefix: "t:", Timeout: config.Duration{Duration: 300 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	f := newFixture(t, func(c *Config) {
		c.DPoPReplay = state.NewReplay(rs, "as", TokenReplayPerClient)
		c.Clients = append(c.Clients, StaticClient{ID: "svc", Secret: "svc-secret", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}})
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}
	req := func(proof string) (int, string, string) {
		r, body := f.postForm("/token", form, map[string]string{
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:svc-secret")), "DPoP": proof,
		})
		return r.StatusCode, body, r.Header.Get("Retry-After")
	}
	proof := func() string {
		p, _ := dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
		return p
	}
	p := proof()
	if st, body, _ := req(p); st != 200 {
		t.Fatalf("first use: %d %s", st, body)
	}
	if st, body, _ := req(p); st != 400 || !jsonHas(body, "error", "invalid_dpop_proof") {
		t.Fatalf("replay: %d %s, want 400 invalid_dpop_proof", st, body)
	}
	srv.Stop()
	st, body, retry := req(proof())
	if st != 503 || retry == "" || !jsonHas(body, "error", "temporarily_unavailable") || !strings.Contains(body, "shared state (Redis) unavailable") {
		t.Fatalf("Redis down: %d %q %s, want 503 temporarily_unavailable with Retry-After", st, retry, body)
	}
	srv.Start()
	if st, body, _ := req(proof()); st != 200 {
		t.Fatalf("Redis back: %d %s", st, body)
	}
}
