package authserver

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestIDJAGReplayAcrossReplicas: with the assertion jti store in Redis,
// an ID-JAG used at one replica is refused at another; with Redis down
// every ID-JAG is refused 503 with Retry-After (never a token), and
// accepted again once Redis is back.
func TestIDJAGReplayAcrossReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	rs, err := state.Open(config.Redis{URL: srv.URL(), KeyPrefix: "t:", Timeout: config.Duration{Duration: 300 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	shared := func(c *Config) { c.AssertionReplay = state.NewReplay(rs, "as-assertion", AssertionReplayPerOwner) }
	a := newJAGFixture(t, shared)
	// The second replica trusts the same IdP and has the same issuer URL
	// as far as the ID-JAG is concerned: give it a's issuer.
	b := newJAGFixture(t, func(c *Config) { shared(c); c.Issuer = a.srv.URL })
	b.idp = a.idp
	b.as.cfg.TrustedIdPs = a.as.cfg.TrustedIdPs
	jag := a.jag(t, nil)
	resp, body := a.present(jag, nil, "app", "app-secret")
	tokenOf(t, "replica a", resp, body)
	resp, body = b.present(jag, nil, "app", "app-secret")
	wantError(t, "the same ID-JAG at replica b", resp, body, 400, "invalid_grant")
	srv.Stop()
	resp, body = a.present(a.jag(t, nil), nil, "app", "app-secret")
	wantError(t, "Redis down", resp, body, 503, "temporarily_unavailable")
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "shared state (Redis) unavailable") {
		t.Fatalf("Redis down: Retry-After %q, %s", resp.Header.Get("Retry-After"), body)
	}
	srv.Start()
	resp, body = a.present(a.jag(t, nil), nil, "app", "app-secret")
	tokenOf(t, "Redis back", resp, body)
}
