//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestClusterClients: the official TypeScript SDK client and `mcpgate
// connect` (after `mcpgate login` at the built-in authorization server,
// every step of it through the load balancer) work through HAProxy
// without affinity; the replicas' audit logs show that at least two
// replicas served the same session.
func TestClusterClients(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	mcpURL := c.LB + HTTPPath
	alice := func(from, to time.Time) func(AuditRecord) bool {
		return func(r AuditRecord) bool { return r.Subject == "alice" && !r.Time.Before(from) && !r.Time.After(to) }
	}
	t.Run("TypeScript SDK", func(t *testing.T) {
		// one session per run; alice's records within a run are its session's
		for run := range 3 {
			from := time.Now()
			p, _ := Start(t, "ts-client", []string{Node22(t), "fixtures/client/run.mjs", mcpURL}, nil, nil)
			if err := p.Wait(90 * time.Second); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(p.Output()), "\n")
			var out struct {
				Steps []string `json:"steps"`
				Tools []string `json:"tools"`
				Echo  string   `json:"echo"`
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil || strings.Join(out.Steps, ",") != "unauthorized,logged-in,token,connected" ||
				!slices.Contains(out.Tools, "echo") || !strings.Contains(out.Echo, "hello from the TS SDK") {
				t.Fatalf("run %d: %v\n%s", run, err, p.Output())
			}
			if served := c.ServedBy(t, alice(from, time.Now())); len(served) < 2 {
				t.Errorf("run %d: the TS SDK session was served by replicas %v only, want at least 2", run, served)
			}
		}
	})
	t.Run("mcpgate connect", func(t *testing.T) {
		cl := newCLI(t)
		if out := cl.must("login", "--store", "file", "--browser", cl.browse, mcpURL); !strings.Contains(out, "alice") {
			t.Fatalf("login through the load balancer: %s", out)
		}
		from := time.Now()
		rep := runStdioClient(t, cl.env, cl.bin, "connect", "--store", "file", mcpURL)
		checkComplete(t, "mcpgate connect through HAProxy", rep)
		served := c.ServedBy(t, alice(from, time.Now()))
		if len(served) < 2 {
			t.Errorf("the bridge's session was served by replicas %v only, want at least 2", served)
		}
		calls := 0
		for i := range c.Replicas {
			for _, r := range c.AuditLog(t, i) {
				if alice(from, time.Now())(r) && r.Method == "tools/call" && r.Decision == "allow" {
					calls++
				}
			}
		}
		if calls < 10 {
			t.Errorf("%d tools/call through the bridge in the audit logs, want at least 10", calls)
		}
		t.Logf("the bridge's session: %d tool calls over replicas %v", calls, served)
	})
}

// TestClusterLegacyClient: a 2024-11-05 client (MCP Inspector's CLI over
// HTTP+SSE) through HAProxy without affinity: its stream stays on one
// replica and its POSTs to /message?sessionId= reach others, which
// forward them to the stream's replica (stdio child and HTTP upstream).
func TestClusterLegacyClient(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	cli := Module(t, "@modelcontextprotocol/inspector/cli/build/cli.js")
	for _, path := range []string{HTTPPath, StdioPath} {
		tok := c.Token(t, 0, path)
		from := time.Now()
		p, _ := Start(t, "inspector-sse", []string{Node22(t), cli, "--cli", c.LB + path + "/sse", "--transport", "sse",
			"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=legacy-through-cluster",
			"--header", "Authorization: Bearer " + tok}, nil, nil)
		if err := p.Wait(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p.Output(), "Echo: legacy-through-cluster") {
			t.Fatalf("%s: inspector over HTTP+SSE through the load balancer:\n%s", path, p.Output())
		}
		served := c.ServedBy(t, func(r AuditRecord) bool { return r.Subject == "machine-0" && !r.Time.Before(from) })
		if len(served) < 2 {
			t.Errorf("%s: the legacy session was served by replicas %v only, want at least 2 (no affinity)", path, served)
		}
	}
}

// TestClusterDPoPReplay: a DPoP proof accepted by one replica is refused
// by every other (the jti record in Redis), sent straight to the replicas
// past HAProxy; a nonce issued by one replica is accepted by all (the
// shared dpop_nonces.key_file).
func TestClusterDPoPReplay(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof := func(htu, tok, nonce string) string {
		p, err := dpop.NewProof(key, "ES256", "POST", htu, dpop.ProofOptions{AccessToken: tok, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := dpopToken(t, c, proof(c.LB+"/token", "", ""))
	send := func(i int, p string) Answer {
		return c.Post(i, HTTPPath, initialize, "Authorization", "DPoP "+tok, "DPoP", p)
	}
	first := send(0, proof(c.LB+HTTPPath, tok, ""))
	nonce := first.Header.Get("DPoP-Nonce")
	if first.Status != 401 || nonce == "" {
		t.Fatalf("a proof without a nonce: %d %v %s", first.Status, first.Header, first.Body)
	}
	p := proof(c.LB+HTTPPath, tok, nonce) // htu: the public URL, whichever replica answers
	if a := send(1, p); a.Status != 200 {
		t.Fatalf("replica 1 with replica 0's nonce: %v %d %s", a.Err, a.Status, a.Body)
	}
	for _, i := range []int{2, 0, 1} {
		a := send(i, p)
		www := strings.Join(a.Header.Values("WWW-Authenticate"), ", ")
		if a.Status != 401 || !strings.Contains(www, "invalid_dpop_proof") || !strings.Contains(www+a.Body, "replay") {
			t.Errorf("the proof replayed to replica %d: %d %s %s (want 401 invalid_dpop_proof, jti replay)", i, a.Status, www, a.Body)
		}
	}
	// the refusals were about the replay: a fresh proof passes everywhere
	for i := range c.Replicas {
		if a := send(i, proof(c.LB+HTTPPath, tok, nonce)); a.Status != 200 {
			t.Errorf("a fresh proof at replica %d: %d %s", i, a.Status, a.Body)
		}
	}
	// the same at the built-in server's token endpoint: a token request's
	// proof used at one replica is refused at another
	tp := proof(c.LB+"/token", "", "")
	if st, _, m := dpopTokenAt(t, c.Replicas[0].URL, c.Host(), tp); st != 200 {
		t.Fatalf("token request at replica 0: %d %v: %v", st, m["error"], m["error_description"])
	}
	if st, _, m := dpopTokenAt(t, c.Replicas[2].URL, c.Host(), tp); st != 400 || m["error"] != "invalid_dpop_proof" {
		t.Errorf("the token request's proof replayed to replica 2: %d %v (want 400 invalid_dpop_proof; a token was issued: %v)", st, m["error"], m["access_token"] != nil)
	}
}

// dpopToken gets a DPoP-bound token of dpop-machine through the load
// balancer.
func dpopToken(t *testing.T, c *Cluster, p string) string {
	t.Helper()
	st, _, m := dpopTokenAt(t, c.LB, c.Host(), p)
	tok, _ := m["access_token"].(string)
	if st != 200 || m["token_type"] != "DPoP" || tok == "" {
		t.Fatalf("DPoP token request: %d %v: %v", st, m["error"], m["error_description"])
	}
	return tok
}

func dpopTokenAt(t *testing.T, base, host, p string) (int, http.Header, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {"http://" + host + HTTPPath}, "scope": {"mcp:read"}}
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(form.Encode()))
	req.Host = host
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("dpop-machine", MachineSecret)
	req.Header.Set("DPoP", p)
	resp, err := clusterClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

// TestClusterRateLimit: one subject's rate limit holds over the three
// replicas together. Concurrent requests through the load balancer (round
// robin: a third to each replica) for a few seconds; what the limiter lets
// through stays within the documented tolerance, burst + rate×interval +
// replicas×max_batch (docs/security.md "Shared state"; max_batch = burst/8
// within 1..16), far below what three separate limiters would admit.
func TestClusterRateLimit(t *testing.T) {
	const rate, burst = 4, 8
	c := StartCluster(t, ClusterOptions{Limits: "  requests_per_second: 4\n  burst: 8\n"})
	tok := c.Token(t, 0, HTTPPath)
	const ping = `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	var accepted, limited, other atomic.Int64
	var mu sync.Mutex // guards odd
	var odd []string
	start := time.Now()
	stop := start.Add(3 * time.Second)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				a := c.Post(-1, HTTPPath, ping, "Authorization", "Bearer "+tok)
				switch {
				case a.Err != nil || a.Status >= 500:
					other.Add(1)
					mu.Lock()
					odd = append(odd, a.Body)
					mu.Unlock()
				case a.Status == http.StatusTooManyRequests:
					limited.Add(1)
				default:
					accepted.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	maxBatch := min(16, max(1, burst/8))
	bound := float64(burst) + rate*elapsed + float64(len(c.Replicas)*maxBatch)
	separate := float64(len(c.Replicas)) * (burst + rate*elapsed)
	t.Logf("%.1fs: %d accepted, %d limited, %d other; shared bound %.1f, three separate limiters would admit up to %.1f",
		elapsed, accepted.Load(), limited.Load(), other.Load(), bound, separate)
	if other.Load() > 0 {
		t.Errorf("%d answers neither accepted nor 429: %.300q", other.Load(), odd)
	}
	if limited.Load() == 0 || float64(accepted.Load()+limited.Load()) < separate {
		t.Fatalf("the load did not exceed what three separate limiters admit: the test proves nothing")
	}
	if float64(accepted.Load()) > bound {
		t.Errorf("%d requests accepted in %.1fs over %d replicas, above the documented tolerance %.1f", accepted.Load(), elapsed, len(c.Replicas), bound)
	}
	if accepted.Load() < burst {
		t.Errorf("only %d accepted: less than the burst %d", accepted.Load(), burst)
	}
}

// TestClusterHTTPSession: a 2025-11-25 session to the Streamable HTTP
// upstream created on one replica continues on each of the others, and a
// session through the load balancer works call after call.
func TestClusterHTTPSession(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	tok := c.Token(t, 0, HTTPPath)
	sid := c.Initialize(t, 0, HTTPPath, tok)
	for _, i := range []int{1, 2, 0, 2} {
		msg := "on replica " + strconv.Itoa(i)
		if a := c.Echo(i, HTTPPath, tok, sid, msg); a.Status != 200 || !strings.Contains(a.Body, msg) {
			t.Fatalf("the session of replica 0 at replica %d: %v %d %.300s", i, a.Err, a.Status, a.Body)
		}
	}
	// another subject with the id is refused everywhere
	other := c.Token(t, 1, HTTPPath)
	for i := range c.Replicas {
		if a := c.Echo(i, HTTPPath, other, sid, "stolen"); a.Status != 404 {
			t.Errorf("another subject with the session id at replica %d: %d %.300s (want 404)", i, a.Status, a.Body)
		}
	}
	s, err := OpenRawSession(Ctx(t, time.Minute), clusterClient, c.LB+HTTPPath, tok)
	if err != nil {
		t.Fatal(err)
	}
	s.Client = &http.Client{Timeout: 30 * time.Second}
	for i := range 9 {
		if _, err := s.CallTool(Ctx(t, time.Minute), "echo", map[string]any{"message": "lb"}); err != nil {
			t.Fatalf("call %d through the load balancer: %v", i, err)
		}
	}
	served := c.ServedBy(t, func(r AuditRecord) bool { return r.Subject == "machine-0" && r.Method == "tools/call" })
	if len(served) != len(c.Replicas) {
		t.Errorf("machine-0's calls were served by replicas %v, want all %d", served, len(c.Replicas))
	}
}
