package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
)

// fakeExchanger answers exchanges with answer and records the subject
// tokens it was given.
type fakeExchanger struct {
	calls    atomic.Int32
	mu       sync.Mutex // guards subjects
	subjects []string
	answer   func(subject string) (ExchangedToken, error)
}

func (f *fakeExchanger) Exchange(_ context.Context, subject string) (ExchangedToken, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.subjects = append(f.subjects, subject)
	f.mu.Unlock()
	return f.answer(subject)
}

// upstreamTokenFor is the fake identity provider's exchanged token for a
// subject token: distinct per source token, never the source token.
func upstreamTokenFor(subject string) (ExchangedToken, error) {
	return ExchangedToken{Value: "up-" + subject[len(subject)-12:], Expiry: time.Now().Add(time.Hour)}, nil
}

func exchangeConfig(c *config.Gateway) {
	c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{TokenExchange: &config.TokenExchange{
		TokenEndpoint: "https://idp.example/token", ClientID: "gw", ClientSecretEnv: "S", Audience: "internal-api"}}
}

func startExchangeGateway(t testing.TB, fx TokenExchanger, mutate func(*config.Gateway)) *testGateway {
	return startGatewayOpts(t, func(c *config.Gateway) {
		exchangeConfig(c)
		if mutate != nil {
			mutate(c)
		}
	}, Options{TokenExchangers: func(up string, c *config.TokenExchange) (TokenExchanger, error) {
		if up != "" && c.Audience != "internal-api" {
			return nil, errors.New("unexpected configuration")
		}
		return fx, nil
	}})
}

// TestTokenExchangeForwardsExchangedToken: the upstream receives the
// token exchanged for the caller's, never the caller's token; the
// exchanger is given the caller's token as the subject token; the cache
// answers a second request of the same token, and another token (or
// another subject) gets its own exchange.
func TestTokenExchangeForwardsExchangedToken(t *testing.T) {
	fx := &fakeExchanger{answer: upstreamTokenFor}
	tg := startExchangeGateway(t, fx, nil)
	alice := tg.token(t, "alice", "mcp:read")
	for range 2 {
		if r := tg.do(t, "POST", "/mcp", initBody, bearer(alice)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		h := tg.up.lastHeader()
		if got, want := h.Get("Authorization"), "Bearer up-"+alice[len(alice)-12:]; got != want {
			t.Fatalf("upstream Authorization %q, want %q", got, want)
		}
		for _, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, alice) {
					t.Fatalf("the caller's token reached the upstream: %v", h)
				}
			}
		}
	}
	if fx.calls.Load() != 1 || fx.subjects[0] != alice {
		t.Fatalf("exchanges %d, subjects %d", fx.calls.Load(), len(fx.subjects))
	}
	alice2 := tg.token(t, "alice", "mcp:read")
	bob := tg.token(t, "bob", "mcp:read")
	for _, tok := range []string{alice2, bob} {
		if r := tg.do(t, "POST", "/mcp", initBody, bearer(tok)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if got := tg.up.lastHeader().Get("Authorization"); got != "Bearer up-"+tok[len(tok)-12:] {
			t.Fatalf("upstream Authorization %q", got)
		}
	}
	if fx.calls.Load() != 3 {
		t.Fatalf("exchanges %d, want 3 (one per source token)", fx.calls.Load())
	}
}

// TestTokenExchangeRefusals: how each failure of the exchange answers
// the client; the upstream is never called and the caller's token never
// sent instead.
func TestTokenExchangeRefusals(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		want   string
		cached bool
	}{
		{"invalid_target", &ExchangeError{Code: "invalid_target", Description: "no such audience", Status: 400}, 403, "invalid_target (no such audience)", true},
		{"invalid_scope", &ExchangeError{Code: "invalid_scope", Status: 400}, 403, "invalid_scope", true},
		{"unauthorized_client", &ExchangeError{Code: "unauthorized_client", Status: 400}, 403, "unauthorized_client", true},
		{"access_denied", &ExchangeError{Code: "access_denied", Description: "not in group\r\nX: y", Status: 400}, 403, "access_denied (not in groupX: y)", true},
		{"invalid_request", &ExchangeError{Code: "invalid_request", Status: 400}, 403, "invalid_request", true},
		{"invalid_client", &ExchangeError{Code: "invalid_client", Status: 401}, 502, "invalid_client", true},
		{"busy", &ExchangeError{Code: "temporarily_unavailable", Status: 503, Transient: true}, 503, "busy", false},
		{"network", &ExchangeError{Err: errors.New("connection refused"), Transient: true}, 502, "connection refused", false},
		{"server error", &ExchangeError{Status: 500, Transient: true}, 502, "HTTP 500", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := &fakeExchanger{answer: func(string) (ExchangedToken, error) { return ExchangedToken{}, tc.err }}
			tg := startExchangeGateway(t, fx, nil)
			tok := tg.token(t, "alice", "mcp:read")
			for range 2 {
				r := tg.do(t, "POST", "/mcp", initBody, bearer(tok))
				_, msg, _ := r.rpcError(t)
				if r.status != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\r") {
					t.Fatalf("%d %q, want %d with %q", r.status, msg, tc.status, tc.want)
				}
				if tc.status == 503 && r.header.Get("Retry-After") == "" {
					t.Fatal("503 without Retry-After")
				}
			}
			if tg.up.hits.Load() != 0 {
				t.Fatal("the upstream was called")
			}
			if want := map[bool]int32{true: 1, false: 2}[tc.cached]; fx.calls.Load() != want {
				t.Fatalf("exchanges %d, want %d", fx.calls.Load(), want)
			}
			if tc.status == 403 && !strings.Contains(tg.audit.String(), `"reason":"token_exchange_`+tc.name) {
				t.Fatalf("refusal not audited: %s", tg.audit.String())
			}
		})
	}
}

// TestTokenExchangeReplayElsewhere: a token exchanged for the upstream's
// audience is no credential at the gateway itself (its audience is not
// this mount's resource).
func TestTokenExchangeReplayElsewhere(t *testing.T) {
	var tg *testGateway
	fx := &fakeExchanger{}
	tg = startExchangeGateway(t, fx, nil)
	var minted string
	fx.answer = func(string) (ExchangedToken, error) {
		return ExchangedToken{Value: minted, Expiry: time.Now().Add(time.Hour)}, nil
	}
	minted = tg.idp.Sign(t, "RS256", tg.idp.Claims("alice", "internal-api", "mcp:read"))
	if r := tg.do(t, "POST", "/mcp", initBody, bearer(tg.token(t, "alice", "mcp:read"))); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := tg.do(t, "POST", "/mcp", initBody, bearer(minted)); r.status != http.StatusUnauthorized {
		t.Fatalf("the exchanged token was accepted by the gateway: %d %s", r.status, r.body)
	}
}

// TestTokenExchangeHop: a request forwarded by another replica carries
// no token; the source adds nothing (the held upstream connection has
// its credential) and never the caller's token; a request with neither
// a token nor a hop is refused.
func TestTokenExchangeHop(t *testing.T) {
	fx := &fakeExchanger{answer: upstreamTokenFor}
	s := &exchangeSource{x: fx, header: "Authorization", scheme: "Bearer", cache: newExchangeCache(4), now: time.Now}
	p := &resource.Principal{Issuer: "i", Subject: "alice"}
	hop := httptest.NewRequest("POST", "/mcp", nil)
	hop.Header.Set(state.HeaderHop, "v2.x.y")
	h := http.Header{}
	if err := s.addTo(context.Background(), credCaller{p: p, r: hop}, h); err != nil || len(h) != 0 || fx.calls.Load() != 0 {
		t.Fatalf("hop: err %v, headers %v, exchanges %d", err, h, fx.calls.Load())
	}
	bare := httptest.NewRequest("POST", "/mcp", nil)
	if err := s.addTo(context.Background(), credCaller{p: p, r: bare}, h); !errors.Is(err, errNoSubjectToken) || len(h) != 0 {
		t.Fatalf("no token: err %v, headers %v", err, h)
	}
	basic := httptest.NewRequest("POST", "/mcp", nil)
	basic.SetBasicAuth("a", "b")
	if err := s.addTo(context.Background(), credCaller{p: p, r: basic}, h); !errors.Is(err, errNoSubjectToken) {
		t.Fatalf("basic: %v", err)
	}
}

// TestExchangeCacheExpiry: an exchanged token is used until the earlier
// of its own expiry (less the renewal skew) and the caller's token's.
func TestExchangeCacheExpiry(t *testing.T) {
	now := time.Unix(1e6, 0)
	s := &exchangeSource{}
	tests := []struct {
		name            string
		exchanged, call time.Duration // from now; 0 is unknown
		want            time.Duration
	}{
		{"exchanged first", 10 * time.Minute, time.Hour, 10*time.Minute - renewSkew},
		{"caller first", time.Hour, 2 * time.Minute, 2 * time.Minute},
		{"short-lived", 8 * time.Second, time.Hour, 6 * time.Second},
		{"neither says", 0, 0, maxExchangeTTL},
		{"exchanged unknown, caller later", 0, time.Hour, maxExchangeTTL},
		{"caller only", 0, time.Minute, time.Minute},
	}
	for _, tc := range tests {
		p := &resource.Principal{}
		tok := ExchangedToken{}
		if tc.call > 0 {
			p.Expiry = now.Add(tc.call)
		}
		if tc.exchanged > 0 {
			tok.Expiry = now.Add(tc.exchanged)
		}
		if got := s.until(p, tok, now).Sub(now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	c := newExchangeCache(2)
	fetches := 0
	fetch := func(until time.Time) func(context.Context) (string, time.Time, error) {
		return func(context.Context) (string, time.Time, error) { fetches++; return "v", until, nil }
	}
	ctx := context.Background()
	c.get(ctx, "k", now, fetch(now.Add(time.Minute)))
	c.get(ctx, "k", now.Add(59*time.Second), fetch(now.Add(time.Minute)))
	if fetches != 1 {
		t.Fatalf("fetches %d before expiry", fetches)
	}
	c.get(ctx, "k", now.Add(time.Minute), fetch(now.Add(2*time.Minute)))
	if fetches != 2 {
		t.Fatalf("fetches %d after expiry", fetches)
	}
	c.get(ctx, "past", now, fetch(now)) // already expired: used once, not kept
	if c.len() != 1 {
		t.Fatalf("an expired token was kept: %d entries", c.len())
	}
}

// TestExchangeCacheBounded: the cache keeps at most its size, evicting
// the least recently used entry.
func TestExchangeCacheBounded(t *testing.T) {
	c := newExchangeCache(2)
	now := time.Unix(1e6, 0)
	ctx := context.Background()
	var fetched []string
	get := func(k string) {
		c.get(ctx, k, now, func(context.Context) (string, time.Time, error) {
			fetched = append(fetched, k)
			return "v-" + k, now.Add(time.Hour), nil
		})
	}
	get("a")
	get("b")
	get("a") // a is now the most recently used
	get("c") // evicts b
	get("a")
	get("b")
	if c.len() != 2 || strings.Join(fetched, ",") != "a,b,c,b" {
		t.Fatalf("entries %d, fetched %v", c.len(), fetched)
	}
}

// TestExchangeCacheSingleFlight: concurrent requests for one key share
// one exchange, its failure included (a transient one, which is not
// cached: only the flight explains a single call).
func TestExchangeCacheSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newExchangeCache(10)
		release := make(chan struct{})
		var calls atomic.Int32
		fail := &ExchangeError{Status: 503, Transient: true}
		fetch := func(context.Context) (string, time.Time, error) {
			calls.Add(1)
			<-release
			return "", time.Now().Add(time.Hour), fail
		}
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.get(context.Background(), "k", time.Now(), fetch) })
		}
		synctest.Wait() // all five are blocked: one in fetch, four waiting for it
		close(release)
		wg.Wait()
		for _, err := range errs {
			if err != fail {
				t.Fatalf("err %v", err)
			}
		}
		if calls.Load() != 1 || c.len() != 0 {
			t.Fatalf("calls %d, entries %d", calls.Load(), c.len())
		}
		ctx, cancel := context.WithCancel(context.Background())
		block := make(chan struct{})
		go c.get(context.Background(), "slow", time.Now(), func(context.Context) (string, time.Time, error) { <-block; return "v", time.Now().Add(time.Hour), nil })
		synctest.Wait()
		done := make(chan error)
		go func() { _, err := c.get(ctx, "slow", time.Now(), fetch); done <- err }()
		synctest.Wait()
		cancel() // a waiter that gives up gets its context's error, the flight goes on
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter: %v", err)
		}
		close(block)
		synctest.Wait()
		if v, err := c.get(ctx, "slow", time.Now(), fetch); v != "v" || err != nil {
			t.Fatalf("after the flight: %q %v", v, err)
		}
	})
}

// TestTokenExchangeConfigErrors: what the gateway refuses to start with.
func TestTokenExchangeConfigErrors(t *testing.T) {
	fx := &fakeExchanger{answer: upstreamTokenFor}
	g := &Gateway{opts: Options{TokenExchangers: func(string, *config.TokenExchange) (TokenExchanger, error) { return fx, nil }}}
	m := &mount{g: g}
	te := &config.TokenExchange{TokenEndpoint: "https://idp.example/t", ClientID: "gw", Audience: "a"}
	for name, u := range map[string]config.Upstream{
		"stdio without child_env": {Transport: "stdio", UpstreamAuth: &config.UpstreamAuth{TokenExchange: te}},
		"conflict":                {Transport: "streamable", UpstreamAuth: &config.UpstreamAuth{Header: "authorization", ValueEnv: "X", TokenExchange: te}},
	} {
		if _, err := m.newExchangeSource(u); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	src, err := m.newExchangeSource(config.Upstream{Transport: "stdio", UpstreamAuth: &config.UpstreamAuth{TokenExchange: te, ChildEnv: "UPSTREAM_TOKEN"}})
	if err != nil || src != nil || m.childCred == nil || m.childCred.name != "UPSTREAM_TOKEN" {
		t.Errorf("stdio with child_env: %v %v %+v", err, src, m.childCred)
	}
	m.g = &Gateway{}
	if _, err := m.newExchangeSource(config.Upstream{Transport: "streamable", UpstreamAuth: &config.UpstreamAuth{TokenExchange: te}}); err == nil {
		t.Error("no exchanger: accepted")
	}
}

// TestTokenExchangeStdioChildEnv: on a command upstream each session's
// child gets its own caller's exchanged token in the configured
// variable, read from inside the child; another caller's child never
// sees it, and the caller's own token is in no child.
func TestTokenExchangeStdioChildEnv(t *testing.T) {
	bin := echoServer(t)
	fx := &fakeExchanger{answer: upstreamTokenFor}
	tg := startExchangeGateway(t, fx, func(c *config.Gateway) {
		u := &c.Upstreams[0]
		u.URL, u.Command, u.Transport = "", []string{bin}, "stdio"
		u.UpstreamAuth.ChildEnv = "UPSTREAM_TOKEN"
	})
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	childEnv := func(tok, sid, name string) string {
		r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"env","arguments":{"name":"`+name+`"}}}`,
			with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
		var m struct {
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		body := r.body
		if data := sseData(r.body); len(data) > 0 {
			body = []byte(data[len(data)-1])
		}
		if err := json.Unmarshal(body, &m); err != nil || r.status != 200 || len(m.Result.Content) != 1 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return m.Result.Content[0].Text
	}
	sa, sb := tg.initialize(t, alice), tg.initialize(t, bob)
	if got, want := childEnv(alice, sa, "UPSTREAM_TOKEN"), "up-"+alice[len(alice)-12:]; got != want {
		t.Fatalf("alice's child has %q, want %q", got, want)
	}
	if got, want := childEnv(bob, sb, "UPSTREAM_TOKEN"), "up-"+bob[len(bob)-12:]; got != want {
		t.Fatalf("bob's child has %q, want %q", got, want)
	}
	for _, v := range []string{"AUTHORIZATION", "TOKEN"} {
		if got := childEnv(bob, sb, v); got != "" {
			t.Fatalf("%s in the child: %q", v, got)
		}
	}
}
