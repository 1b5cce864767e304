package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// fakeFederation stands in for the built-in server's kept tokens: one
// token per user, an error for the others; it records who was asked.
type fakeFederation struct {
	mu    sync.Mutex // guards toks, err, asked
	toks  map[string]string
	err   error
	asked []string
}

func (f *fakeFederation) ServeHTTP(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }

func (f *fakeFederation) FederatedToken(_ context.Context, user, kind string) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, user+"/"+kind)
	if f.err != nil {
		return "", time.Time{}, f.err
	}
	t, ok := f.toks[user]
	if !ok {
		return "", time.Time{}, errors.New("no identity provider token is kept for you: sign in again")
	}
	return t + "-" + kind, time.Now().Add(time.Hour), nil
}

func (f *fakeFederation) set(user, tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.toks[user] = tok
}

func (f *fakeFederation) askedOf() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// fedGateway is a gateway whose built-in issuer (its public URL) signs
// with the test IdP's keys, in front of the fake upstream, with fed as
// the built-in server.
type fedGateway struct {
	*testGateway
	fed  *fakeFederation
	logs *lockedWriter // everything the gateway logs, at debug level
}

func startFedGateway(t *testing.T, mutate func(*config.Gateway)) *fedGateway {
	t.Helper()
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(ln.Addr().String(), idp, up.srv.URL)
	cfg.Issuers = append(cfg.Issuers, config.Issuer{Issuer: cfg.PublicURL, JWKSURI: idp.Issuer + "/jwks"})
	cfg.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{FederatedToken: &config.FederatedToken{}}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.ApplyDefaults()
	fed := &fakeFederation{toks: map[string]string{"alice": "idp-alice", "bob": "idp-bob"}}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	gw, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Getenv: func(string) string { return "" }, AuthServer: fed})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	tg := &testGateway{gw: gw, url: cfg.PublicURL, idp: idp, up: up, cfg: cfg}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if resp, err := http.Get(tg.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}
	return &fedGateway{testGateway: tg, fed: fed, logs: logs}
}

// userToken is a token of the built-in issuer for a signed-in user.
func (fg *fedGateway) userToken(t *testing.T, sub string) string {
	c := fg.idp.Claims(sub, fg.url+"/mcp", "mcp:read")
	c["iss"], c["auth_time"] = fg.url, time.Now().Unix()
	return fg.idp.Sign(t, "RS256", c)
}

const callEcho = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`

// TestFederatedTokenSentUpstream: each user's own provider token goes
// upstream in Authorization; the client's token never does.
func TestFederatedTokenSentUpstream(t *testing.T) {
	fg := startFedGateway(t, nil)
	for _, u := range []string{"alice", "bob", "alice"} {
		tok := fg.userToken(t, u)
		r := fg.do(t, "POST", "/mcp", initBody, bearer(tok))
		if r.status != 200 {
			t.Fatalf("%s: %d %s", u, r.status, r.body)
		}
		got := fg.up.lastHeader().Get("Authorization")
		if got != "Bearer idp-"+u+"-access_token" {
			t.Fatalf("%s: upstream got Authorization %q", u, got)
		}
		if strings.Contains(got, tok) {
			t.Fatal("the client's token went upstream")
		}
	}
	// the second call of alice was served from the gateway's short cache
	if n := len(fg.fed.askedOf()); n != 2 {
		t.Fatalf("the built-in server was asked %d times: %v", n, fg.fed.askedOf())
	}
}

// TestFederatedTokenHeaderAndKind: token: id_token in another header is
// the bare token.
func TestFederatedTokenHeaderAndKind(t *testing.T) {
	fg := startFedGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].UpstreamAuth.FederatedToken = &config.FederatedToken{Token: "id_token", Header: "X-Id-Token"}
	})
	if r := fg.do(t, "POST", "/mcp", initBody, bearer(fg.userToken(t, "alice"))); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if h := fg.up.lastHeader(); h.Get("X-Id-Token") != "idp-alice-id_token" || h.Get("Authorization") != "" {
		t.Fatalf("upstream headers: %v", h)
	}
}

// TestAttackFederatedTokenNotTheUser: a token of another trusted issuer
// naming the same subject, and a token without a user (client
// credentials: its subject is a client id), get no one's provider token;
// the built-in server is never asked, the upstream gets nothing, and the
// answer says why.
func TestAttackFederatedTokenNotTheUser(t *testing.T) {
	fg := startFedGateway(t, nil)
	other := fg.token(t, "alice", "mcp:read") // the test IdP's own issuer
	machine := func() string {
		c := fg.idp.Claims("alice", fg.url+"/mcp", "mcp:read")
		c["iss"] = fg.url // a client credentials token of a client named alice
		return fg.idp.Sign(t, "RS256", c)
	}()
	before := fg.up.requests()
	for name, tc := range map[string]struct{ tok, why string }{
		"other issuer":       {other, "your token is from " + fg.idp.Issuer},
		"client credentials": {machine, "has no user"},
	} {
		r := fg.do(t, "POST", "/mcp", initBody, bearer(tc.tok))
		if r.status != http.StatusBadGateway {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		if _, msg, _ := r.rpcError(t); !strings.Contains(msg, tc.why) {
			t.Fatalf("%s: %q", name, msg)
		}
	}
	if len(fg.fed.askedOf()) != 0 || fg.up.requests() != before {
		t.Fatalf("asked %v; upstream requests %d → %d", fg.fed.askedOf(), before, fg.up.requests())
	}
}

// TestFederatedTokenErrorsReachTheUser: the built-in server's refusal
// (no kept token, a refused refresh) is the answer, and nothing goes
// upstream.
func TestFederatedTokenErrorsReachTheUser(t *testing.T) {
	fg := startFedGateway(t, nil)
	r := fg.do(t, "POST", "/mcp", initBody, bearer(fg.userToken(t, "carol")))
	if _, msg, _ := r.rpcError(t); r.status != http.StatusBadGateway || !strings.Contains(msg, "sign in again") {
		t.Fatalf("carol: %d %q", r.status, msg)
	}
	fg.fed.setErr(errors.New("your identity provider session has ended: sign in again through the identity provider"))
	r = fg.do(t, "POST", "/mcp", initBody, bearer(fg.userToken(t, "bob")))
	if _, msg, _ := r.rpcError(t); !strings.Contains(msg, "session has ended") {
		t.Fatalf("bob: %q", msg)
	}
	if fg.up.requests() != 0 {
		t.Fatalf("the upstream was called %d times", fg.up.requests())
	}
}

func stdioFed(bin string) func(*config.Gateway) {
	return func(c *config.Gateway) {
		u := &c.Upstreams[0]
		u.URL, u.Transport, u.Command = "", "stdio", []string{bin}
		u.Env = map[string]string{"CONFIGURED": "yes"}
		u.UpstreamAuth.ChildEnv = "IDP_TOKEN"
	}
}

func (fg *fedGateway) childSays(t *testing.T, tok, sid, name string) string {
	t.Helper()
	r := fg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"env","arguments":{"name":"`+name+`"}}}`,
		with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
	if r.status != 200 {
		t.Fatalf("env %s: %d %s", name, r.status, r.body)
	}
	body := string(r.body)
	i := strings.Index(body, `"text":"`)
	if i < 0 {
		t.Fatalf("env %s: %s", name, body)
	}
	rest := body[i+len(`"text":"`):]
	return rest[:strings.Index(rest, `"`)]
}

// TestChildEnvPerUser: each session's child gets its own caller's token
// in IDP_TOKEN, next to the configured environment; no header carries it.
func TestChildEnvPerUser(t *testing.T) {
	fg := startFedGateway(t, stdioFed(echoServer(t)))
	alice, bob := fg.userToken(t, "alice"), fg.userToken(t, "bob")
	sa, sb := fg.initialize(t, alice), fg.initialize(t, bob)
	if got := fg.childSays(t, alice, sa, "IDP_TOKEN"); got != "idp-alice-access_token" {
		t.Fatalf("alice's child: %q", got)
	}
	if got := fg.childSays(t, bob, sb, "IDP_TOKEN"); got != "idp-bob-access_token" {
		t.Fatalf("bob's child: %q", got)
	}
	if got := fg.childSays(t, alice, sa, "CONFIGURED"); got != "yes" {
		t.Fatalf("configured env: %q", got)
	}
	// the children's argv and the log never carry a token
	fg.logs.mu.Lock()
	logged := fg.logs.w.String()
	fg.logs.mu.Unlock()
	if strings.Contains(logged, "idp-") || !strings.Contains(logged, "echoserver started") {
		t.Fatalf("log: %s", logged)
	}
	if argv := childArgv(t, fg.cfg.Upstreams[0].Command[0]); len(argv) != 2 || strings.Contains(strings.Join(argv, " "), "idp-") {
		t.Fatalf("children's argv: %q", argv)
	}
	// bob cannot reach alice's child
	r := fg.do(t, "POST", "/mcp", callEcho, with(bearer(bob), "Mcp-Session-Id", sa, "MCP-Protocol-Version", "2025-11-25"))
	if r.status == 200 {
		t.Fatalf("bob used alice's session: %s", r.body)
	}
}

// TestChildEnvRestartOnRefresh: when alice's token changes (a refresh),
// her child started with the old one is ended before her next request
// goes anywhere; the client starts a new session whose child has the new
// token. Bob's child is untouched.
func TestChildEnvRestartOnRefresh(t *testing.T) {
	fg := startFedGateway(t, stdioFed(echoServer(t)))
	alice, bob := fg.userToken(t, "alice"), fg.userToken(t, "bob")
	sa, sb := fg.initialize(t, alice), fg.initialize(t, bob)
	cc := fg.gw.mounts[0].childCred
	aliceKey := fg.url + "\x00alice"
	if cc.children(aliceKey) != 1 {
		t.Fatalf("alice's children: %d", cc.children(aliceKey))
	}
	fg.fed.set("alice", "idp-alice-2")
	fg.gw.mounts[0].credSourceCacheReset()
	r := fg.do(t, "POST", "/mcp", callEcho, with(bearer(alice), "Mcp-Session-Id", sa, "MCP-Protocol-Version", "2025-11-25"))
	if r.status == 200 {
		t.Fatalf("the stale child answered: %s", r.body)
	}
	if _, msg, _ := r.rpcError(t); !strings.Contains(msg, "session") {
		t.Fatalf("answer: %q", msg)
	}
	if cc.children(aliceKey) != 0 {
		t.Fatalf("the stale child still runs")
	}
	sa2 := fg.initialize(t, alice)
	if got := fg.childSays(t, alice, sa2, "IDP_TOKEN"); got != "idp-alice-2-access_token" {
		t.Fatalf("new child: %q", got)
	}
	if got := fg.childSays(t, bob, sb, "IDP_TOKEN"); got != "idp-bob-access_token" {
		t.Fatalf("bob's child: %q", got)
	}
}

// credSourceCacheReset forgets the federated source's cached tokens (a
// test changes what the built-in server answers).
func (m *mount) credSourceCacheReset() {
	if cc := m.childCred; cc != nil {
		if s, ok := cc.src.(*federatedSource); ok {
			s.cache.mu.Lock()
			clear(s.cache.m)
			s.cache.mu.Unlock()
		}
	}
}

func (f *fakeUpstream) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.headers)
}

func (f *fakeFederation) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// childArgv returns the command lines of the running processes of bin.
func childArgv(t *testing.T, bin string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("needs /proc")
	}
	var out []string
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.HasPrefix(string(b), bin+"\x00") {
			out = append(out, string(b))
		}
	}
	return out
}

// BenchmarkFederatedTokenCached: what the federated_token source adds to
// a call whose token is in the gateway's cache (issue 15: at most 5 µs over
// a static-credential call).
func BenchmarkFederatedTokenCached(b *testing.B) {
	s := &federatedSource{tokens: &fakeFederation{toks: map[string]string{"alice": "idp-alice"}}, issuer: "https://gw.example",
		kind: "access_token", header: "Authorization", bearer: true, cache: newFedCache(fedCacheEntries)}
	c := credCaller{p: &resource.Principal{Issuer: "https://gw.example", Subject: "alice", Claims: map[string]any{"auth_time": float64(1)}}}
	h := http.Header{}
	if err := s.addTo(context.Background(), c, h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.addTo(context.Background(), c, h)
	}
}
