package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

func pkceS256(v string) string {
	h := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// TestConnectedAccountFlow: a caller without a connection gets a URL
// elicitation; the same user opens it in their browser, the callback
// stores the upstream token, and the retried initialize and tool call
// reach the upstream with that token — never the caller's own.
func TestConnectedAccountFlow(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.connect(t, "alice")
	upTok := cg.as.lastIssued()
	if !strings.HasPrefix(upTok, "up-at-alice-at-upstream-") {
		t.Fatalf("issued %q", upTok)
	}
	sid := cg.initialize(t, tok)
	r := cg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
	if r.status != 200 || !strings.Contains(string(r.body), `"ok"`) {
		t.Fatalf("retried call: %d %s", r.status, r.body)
	}
	if got := cg.up.lastHeader().Get("Authorization"); got != "Bearer "+upTok {
		t.Fatalf("upstream got Authorization %q, want alice's upstream token", got)
	}
	cg.up.mu.Lock()
	defer cg.up.mu.Unlock()
	for _, h := range cg.up.headers {
		if strings.Contains(strings.Join(h.Values("Authorization"), " "), tok) {
			t.Fatal("the caller's own token reached the upstream")
		}
	}
	for _, secret := range []string{upTok, "up-rt-"} {
		if strings.Contains(cg.logs.String(), secret) || strings.Contains(cg.audit.String(), secret) {
			t.Fatalf("a token is in the logs or audit: %s", secret)
		}
	}
}

// TestConnectAnswerShapes: each era and capability gets the answer it can
// show, and every one names the gateway's connect URL.
func TestConnectAnswerShapes(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.token(t, "carol", "mcp:read")
	stateless := func(caps string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"` + caps + `}}}`
	}
	cases := []struct {
		name, body string
		hdr        map[string]string
		want       string
	}{
		{"2026-07-28 with url", stateless(`,"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}`), statelessHeaders(tok, "tools/call", "echo"), `"resultType":"input_required"`},
		{"2026-07-28 without url", stateless(""), statelessHeaders(tok, "tools/call", "echo"), `"isError":true`},
		{"2025-06-18 initialize", strings.Replace(initBody, "2025-11-25", "2025-06-18", 1), bearer(tok), `"code":-50200`},
		{"2025-11-25 initialize without url", initBody, bearer(tok), `"code":-50200`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cg.do(t, "POST", "/mcp", c.body, c.hdr)
			if !strings.Contains(string(r.body), c.want) || !strings.Contains(string(r.body), cg.url+"/connect?ticket=") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if strings.Contains(string(r.body), "-32042") && strings.Contains(c.name, "2026") {
				t.Fatal("-32042 sent to a 2026-07-28 client")
			}
		})
	}
	if cg.up.hits.Load() != 0 {
		t.Fatalf("the upstream was reached %d times without a credential", cg.up.hits.Load())
	}
}

// TestAttackConnectWrongUser: bob cannot use alice's connection, and
// alice's connect URL opened in bob's browser is refused and burned.
func TestAttackConnectWrongUser(t *testing.T) {
	cg := startConnectGateway(t, nil)
	cg.connect(t, "alice")
	bob := cg.token(t, "bob", "mcp:read")
	cg.connectURL(t, bob) // bob has no connection: he is asked to connect, not given alice's

	alice := cg.token(t, "alice2", "mcp:read")
	link := cg.connectURL(t, alice)
	if status, body := open(t, cg.browser(t, "bob"), link); status != http.StatusForbidden {
		t.Fatalf("alice's link in bob's browser: %d %s", status, body)
	}
	if status, _ := open(t, cg.browser(t, "alice2"), link); status != http.StatusGone {
		t.Fatalf("the link opened by the wrong user must be burned, got %d", status)
	}
	if _, ok := cg.connection(t, "bob"); ok {
		t.Fatal("bob got a connection")
	}
}

func (cg *connectGateway) connection(t testing.TB, sub string) (*connection, bool) {
	c, err := cg.src.load(cg.idp.Issuer, sub)
	if err != nil {
		t.Fatal(err)
	}
	return c, c != nil
}

// TestAttackConnectLinkReplayAndExpiry: a connect URL works once, an
// expired one never, a signed-out browser neither (and does not burn it).
func TestAttackConnectLinkReplayAndExpiry(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.token(t, "alice", "mcp:read")
	link := cg.connectURL(t, tok)
	if status, _ := open(t, cg.browser(t, ""), link); status != http.StatusUnauthorized {
		t.Fatalf("signed out: %d", status)
	}
	if status, body := open(t, cg.browser(t, "alice"), link); status != 200 {
		t.Fatalf("first open: %d %s", status, body)
	}
	if status, _ := open(t, cg.browser(t, "alice"), link); status != http.StatusGone {
		t.Fatalf("replayed link: %d", status)
	}
	// an expired ticket (its store entry outlived its time) is refused
	id := randomToken()
	if err := cg.src.store.put(bucketTickets, name("ticket", id), ticket{Issuer: cg.idp.Issuer, Subject: "dave", Upstream: cg.src.m.name, Expires: time.Now().Add(-time.Second)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if status, _ := open(t, cg.browser(t, "dave"), cg.url+"/connect?ticket="+id); status != http.StatusGone {
		t.Fatalf("expired link: %d", status)
	}
	if _, ok := cg.connection(t, "dave"); ok {
		t.Fatal("dave connected with an expired link")
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", 43), "../../etc"} {
		if status, _ := open(t, cg.browser(t, "alice"), cg.url+"/connect?ticket="+bad); status != http.StatusGone {
			t.Fatalf("ticket %q: %d", bad, status)
		}
	}
}

// TestAttackConnectCallback: the callback must carry the flow's state,
// the right iss, arrive once, in the same user's browser.
func TestAttackConnectCallback(t *testing.T) {
	cg := startConnectGateway(t, nil)
	noRedirect := func(user string) *http.Client {
		b := cg.browser(t, user)
		b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return b
	}
	// stops at the upstream's redirect back to the gateway
	callbackURL := func(sub string) string {
		tok := cg.token(t, sub, "mcp:read")
		b := noRedirect(sub)
		resp, err := b.Get(cg.connectURL(t, tok))
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("connect: %v %v", err, resp)
		}
		resp.Body.Close()
		resp, err = b.Get(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize: %v %v", err, resp)
		}
		resp.Body.Close()
		return resp.Header.Get("Location")
	}
	cb := callbackURL("alice")
	if status, _ := open(t, cg.browser(t, "mallory"), cb); status != http.StatusForbidden {
		t.Fatalf("callback in mallory's browser: %d", status)
	}
	if status, _ := open(t, cg.browser(t, "alice"), cb); status != http.StatusBadRequest {
		t.Fatalf("callback after it was refused (single use): %d", status)
	}
	if _, ok := cg.connection(t, "alice"); ok {
		t.Fatal("alice connected through a refused callback")
	}
	cb = callbackURL("alice")
	forged := strings.Replace(cb, "state=", "state=x", 1)
	if status, _ := open(t, cg.browser(t, "alice"), forged); status != http.StatusBadRequest {
		t.Fatalf("forged state: %d", status)
	}
	if status, body := open(t, cg.browser(t, "alice"), cb); status != 200 {
		t.Fatalf("genuine callback after a forged one: %d %s", status, body)
	}
	if status, _ := open(t, cg.browser(t, "alice"), cb); status != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", status)
	}
	cg.as.wrongIss.Store(true)
	if status, body := open(t, cg.browser(t, "erin"), cg.connectURL(t, cg.token(t, "erin", "mcp:read"))); status != http.StatusBadRequest || !strings.Contains(body, "RFC 9207") {
		t.Fatalf("mix-up (wrong iss): %d %s", status, body)
	}
	if _, ok := cg.connection(t, "erin"); ok {
		t.Fatal("erin connected with a foreign iss")
	}
}

// TestConnectRefresh: an expired upstream token is refreshed before use,
// once for concurrent calls; a refused refresh asks the user to connect.
func TestConnectRefresh(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.connect(t, "alice")
	first := cg.as.lastIssued()
	c, _ := cg.connection(t, "alice")
	c.Token.Expiry = time.Now().Add(-time.Minute)
	if err := cg.src.save(c); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := cg.do(t, "POST", "/mcp", initBody, bearer(tok)); r.status != 200 {
				t.Errorf("call during refresh: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if n := cg.as.refreshN.Load(); n != 1 {
		t.Fatalf("%d refresh requests, want 1 (single-flight; the AS rotates refresh tokens)", n)
	}
	second := cg.as.lastIssued()
	if second == first || cg.up.lastHeader().Get("Authorization") != "Bearer "+second {
		t.Fatalf("upstream got %q, want the refreshed %q", cg.up.lastHeader().Get("Authorization"), second)
	}
	c, _ = cg.connection(t, "alice")
	c.Token.Expiry = time.Now().Add(-time.Minute)
	_ = cg.src.save(c)
	cg.as.refuseRefresh.Store(true)
	r := cg.do(t, "POST", "/mcp", initURLBody, bearer(tok))
	if code, _, _ := r.rpcError(t); code != -32042 {
		t.Fatalf("refused refresh: want a new connect request, got %s", r.body)
	}
	if _, ok := cg.connection(t, "alice"); ok {
		t.Fatal("the connection with a refused refresh token was kept")
	}
}

// TestAttackConnectSealedRecords: a record copied under another user's
// name does not open; a store holding garbage fails closed.
func TestAttackConnectSealedRecords(t *testing.T) {
	cg := startConnectGateway(t, nil)
	cg.connect(t, "alice")
	raw, _ := cg.host.AccountGet(bucketAccounts, cg.src.accountName(cg.idp.Issuer, "alice"))
	if raw == nil || strings.Contains(string(raw), "up-at-") || strings.Contains(string(raw), "alice") {
		t.Fatalf("the stored record is not sealed: %q", raw)
	}
	_ = cg.host.AccountPut(bucketAccounts, cg.src.accountName(cg.idp.Issuer, "bob"), raw, 0)
	bob := cg.token(t, "bob", "mcp:read")
	r := cg.do(t, "POST", "/mcp", initURLBody, bearer(bob))
	if r.status == 200 && !strings.Contains(string(r.body), "error") {
		t.Fatalf("bob used alice's copied record: %s", r.body)
	}
	if strings.Contains(cg.up.lastHeaderAuth(), "alice") {
		t.Fatal("alice's token reached the upstream for bob")
	}
}

func (f *fakeUpstream) lastHeaderAuth() string {
	if h := f.lastHeader(); h != nil {
		return h.Get("Authorization")
	}
	return ""
}

// TestAttackConnectBudget: one subject's links are bounded (its oldest is
// dropped); all subjects' together too (503).
func TestAttackConnectBudget(t *testing.T) {
	cg := startConnectGateway(t, func(c *config.UpstreamOAuth) { c.MaxPending, c.MaxPendingPerSubject = 4, 2 })
	tok := cg.token(t, "alice", "mcp:read")
	first := cg.connectURL(t, tok)
	cg.connectURL(t, tok)
	cg.connectURL(t, tok)
	if status, _ := open(t, cg.browser(t, "alice"), first); status != http.StatusGone {
		t.Fatalf("alice's oldest link survived beyond her share: %d", status)
	}
	cg.connectURL(t, cg.token(t, "bob", "mcp:read"))
	cg.connectURL(t, cg.token(t, "bob", "mcp:read"))
	r := cg.do(t, "POST", "/mcp", initURLBody, bearer(cg.token(t, "carol", "mcp:read")))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("a full budget: %d %s", r.status, r.body)
	}
	if n := len(mustList(t, cg.host, bucketTickets)); n > 4 {
		t.Fatalf("%d tickets stored, budget 4", n)
	}
}

func mustList(t testing.TB, h *fakeAccountHost, b string) map[string][]byte {
	m, err := h.AccountList(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConnectAnswerIsJSONRPC: a batch and a GET stream without a
// connection get JSON-RPC answers, never the upstream.
func TestConnectAnswerIsJSONRPC(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.token(t, "alice", "mcp:read")
	r := cg.do(t, "GET", "/mcp", "", bearer(tok))
	var m map[string]any
	if json.Unmarshal(r.body, &m) != nil || m["jsonrpc"] != "2.0" {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if cg.up.hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
}

// TestConnectAccountsPage: the page lists the signed-in user's
// connections; Disconnect needs the same origin and the user's form value,
// revokes both tokens at the upstream's server (RFC 7009), then deletes
// the connection, and the next call asks to connect again.
func TestConnectAccountsPage(t *testing.T) {
	cg := startConnectGateway(t, nil)
	tok := cg.connect(t, "alice")
	c, _ := cg.connection(t, "alice")
	status, page := open(t, cg.browser(t, "alice"), cg.url+"/connect/accounts")
	if status != 200 || !strings.Contains(page, `["mcp"`) || !strings.Contains(page, "accounts of alice") {
		t.Fatalf("page: %d %s", status, page)
	}
	if status, page := open(t, cg.browser(t, "bob"), cg.url+"/connect/accounts"); status != 200 || strings.Contains(page, `"mcp"`) {
		t.Fatalf("bob's page lists alice's connection: %s", page)
	}
	good := (&connectRouter{g: cg.gw, sources: []*oauthSource{cg.src}}).csrf("alice")
	post := func(user, origin, form string) int {
		req, _ := http.NewRequest("POST", cg.url+"/connect/accounts", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := cg.browser(t, user).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, st := range map[string]int{
		"no csrf":       post("alice", "null", "upstream=mcp"),
		"foreign":       post("alice", "https://evil.example", "upstream=mcp&csrf="+good),
		"wrong csrf":    post("alice", cg.url, "upstream=mcp&csrf=00"),
		"bob's session": post("bob", cg.url, "upstream=mcp&csrf="+good),
		"signed out":    post("", cg.url, "upstream=mcp&csrf="+good),
	} {
		if st != http.StatusForbidden && st != http.StatusUnauthorized {
			t.Errorf("%s: %d", name, st)
		}
	}
	if _, ok := cg.connection(t, "alice"); !ok {
		t.Fatal("a refused disconnect removed the connection")
	}
	if st := post("alice", cg.url, "upstream=mcp&csrf="+good); st != 200 {
		t.Fatalf("disconnect: %d", st)
	}
	cg.as.mu.Lock()
	revoked := strings.Join(cg.as.revoked, " ")
	cg.as.mu.Unlock()
	if !strings.Contains(revoked, c.Token.RefreshToken) || !strings.Contains(revoked, c.Token.AccessToken) {
		t.Fatalf("revoked %q, want both tokens", revoked)
	}
	if _, ok := cg.connection(t, "alice"); ok {
		t.Fatal("the connection survived the disconnect")
	}
	r := cg.do(t, "POST", "/mcp", initURLBody, bearer(tok))
	if code, _, _ := r.rpcError(t); code != -32042 {
		t.Fatalf("after disconnect: %s", r.body)
	}
}
