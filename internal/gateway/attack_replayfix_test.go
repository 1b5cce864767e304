package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
)

// dpopCaller is a subject with a DPoP-bound token and its proof key.
type dpopCaller struct {
	key *ecdsa.PrivateKey
	tok string
}

func newDPoPCaller(t testing.TB, tg *testGateway, sub string) *dpopCaller {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := dpop.Thumbprint(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c := tg.idp.Claims(sub, tg.url+"/mcp", "mcp:read")
	c["cnf"] = map[string]any{"jkt": jkt}
	return &dpopCaller{key: key, tok: tg.idp.Sign(t, "RS256", c)}
}

// headers are the Authorization and a fresh DPoP proof for a POST to /mcp.
func (c *dpopCaller) headers(t testing.TB, tg *testGateway) map[string]string {
	t.Helper()
	p, err := dpop.NewProof(c.key, "ES256", "POST", tg.url+"/mcp", dpop.ProofOptions{AccessToken: c.tok})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "DPoP " + c.tok, "DPoP": p}
}

func replayGateway(t *testing.T, entries, perSubject int, rps float64, burst int) *testGateway {
	return startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].DPoP = "required"
		c.Limits.RequestsPerSecond, c.Limits.Burst = rps, burst
		c.Limits.DPoPReplayEntries, c.Limits.DPoPReplayPerSubject = entries, perSubject
	})
}

// TestAttackOneSubjectCannotFillTheDPoPReplayStore: alice sends many more
// fresh proofs than the replay store holds (review finding 3: 101,000
// proofs locked bob out with 401 "could not be checked for replay"). She
// only ever refuses herself (429 naming the limit); bob's valid proof, and
// carol's, are accepted; a replay is still refused.
func TestAttackOneSubjectCannotFillTheDPoPReplayStore(t *testing.T) {
	tg := replayGateway(t, 40, 10, 100000, 100000)
	alice, bob, carol := newDPoPCaller(t, tg, "alice"), newDPoPCaller(t, tg, "bob"), newDPoPCaller(t, tg, "carol")
	counts := map[int]int{}
	var lastMsg string
	for range 120 {
		r := tg.do(t, "POST", "/mcp", listBody, alice.headers(t, tg))
		counts[r.status]++
		if r.status == http.StatusTooManyRequests {
			_, lastMsg, _ = r.rpcError(t)
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if counts[200] == 0 || counts[200] > 10 {
		t.Errorf("alice's flood: %v, want at most her share (10) accepted", counts)
	}
	if counts[http.StatusTooManyRequests] == 0 || !strings.Contains(lastMsg, "limits.dpop_replay_per_subject") {
		t.Errorf("alice's flood: %v, last 429 %q: want 429 naming limits.dpop_replay_per_subject", counts, lastMsg)
	}
	for _, c := range []struct {
		name string
		who  *dpopCaller
	}{{"bob", bob}, {"carol", carol}} {
		h := c.who.headers(t, tg)
		if r := tg.do(t, "POST", "/mcp", listBody, h); r.status != 200 {
			t.Errorf("%s's valid proof after alice's flood: %d %s", c.name, r.status, r.body)
		}
		if r := tg.do(t, "POST", "/mcp", listBody, h); r.status != http.StatusUnauthorized {
			t.Errorf("%s's replayed proof: %d, want 401", c.name, r.status)
		}
	}
	// A replay is refused whatever the subject's share.
	h := alice.headers(t, tg)
	_ = tg.do(t, "POST", "/mcp", listBody, h)
	if r := tg.do(t, "POST", "/mcp", listBody, h); r.status == 200 {
		t.Error("alice's replayed proof accepted")
	}
}

// TestAttackRateLimitedRequestTakesNoReplaySlot: a request refused by the
// rate limit records nothing (review finding 3: 42% of the entries came
// from 429s). With burst 2, alice's 2 accepted requests take 2 entries;
// 20 more, refused by the rate limit, take none.
func TestAttackRateLimitedRequestTakesNoReplaySlot(t *testing.T) {
	tg := replayGateway(t, 100, 3, 0.000001, 2)
	alice := newDPoPCaller(t, tg, "alice")
	for i := range 2 {
		if r := tg.do(t, "POST", "/mcp", listBody, alice.headers(t, tg)); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	for range 20 {
		r := tg.do(t, "POST", "/mcp", listBody, alice.headers(t, tg))
		if r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), "limits.requests_per_second") {
			t.Fatalf("request past the burst: %d %s, want 429 of the rate limit", r.status, r.body)
		}
	}
	m := tg.gw.mounts[0]
	if n, _ := m.replay.(*dpop.MemoryReplay).Len(); n != 2 {
		t.Errorf("replay entries after 2 accepted and 20 rate-limited requests: %d, want 2", n)
	}
}
