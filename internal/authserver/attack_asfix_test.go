package authserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Attacks from the review of the built-in authorization server (review
// "as"): unbounded stored authorization requests, lock-out through the
// user-name throttle key, resetting the throttle by flooding its table,
// log amplification, tossed session cookies, default introspection.

func (f *fixture) authorizeFrom(c *http.Client, form url.Values, addr string) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+"/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	return do(f.t, c, req)
}

func authorizeForm(id, state string) url.Values {
	_, ch := pkcePair()
	return url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1/cb"}, "state": {state},
		"code_challenge": {ch}, "code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}}
}

// storedBytes is the number and the total size of the live entries of a
// bucket.
func (f *fixture) storedBytes(bucket string) (int, int) {
	all, err := f.as.cfg.Store.List(bucket)
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for k, v := range all {
		n += len(k) + len(v)
	}
	return len(all), n
}

// TestAttackAuthorizeFloodBounded: /authorize stores a flow for every
// valid request. A flood with a 60 KiB state stores nothing; one address
// gets PerAddressPerMinute (default 60) requests a minute, then 429 with
// Retry-After (an IPv6 /64 counts as one address; a spoofed
// X-Forwarded-For from an untrusted peer changes nothing); the stored
// flows stay a few KiB each.
func TestAttackAuthorizeFloodBounded(t *testing.T) {
	f := proxied(t, SignInLimits{})
	id := f.publicClient("App")
	c := browserClient()
	big := strings.Repeat("s", 60<<10)
	for _, st := range []string{big, strings.Repeat("s", 1025)} {
		r, page := f.authorizeFrom(c, authorizeForm(id, st), "198.51.100.1")
		if r.StatusCode != 400 || !strings.Contains(page, "state") || strings.Contains(r.Header.Get("Location"), "sss") {
			t.Fatalf("state of %d bytes: %d %.200s", len(st), r.StatusCode, page)
		}
	}
	// other overlong parameters are refused (redirected as invalid_request)
	for k, v := range map[string]string{"nonce": strings.Repeat("n", 257), "code_challenge": strings.Repeat("c", 129),
		"scope": "mcp:read " + strings.Repeat("x", 1100), "dpop_jkt": strings.Repeat("j", 200)} {
		form := authorizeForm(id, "st")
		form.Set(k, v)
		r, _ := f.authorizeFrom(c, form, "198.51.100.2")
		if r.StatusCode != 302 || !strings.Contains(r.Header.Get("Location"), "error=invalid_request") {
			t.Errorf("%s of %d bytes: %d %s", k, len(v), r.StatusCode, r.Header.Get("Location"))
		}
	}
	if n, _ := f.storedBytes("flows"); n != 0 {
		t.Fatalf("%d flows stored by refused requests", n)
	}
	// one address: 60 a minute, then 429
	codes := map[int]int{}
	var retry string
	for range 100 {
		r, _ := f.authorizeFrom(c, authorizeForm(id, strings.Repeat("s", 1000)), "198.51.100.7")
		codes[r.StatusCode]++
		if r.StatusCode == 429 {
			retry = r.Header.Get("Retry-After")
		}
	}
	if codes[200] != 60 || codes[429] != 40 || retry == "" {
		t.Fatalf("100 requests from one address: %v (Retry-After %q), want 60×200 and 40×429", codes, retry)
	}
	n, size := f.storedBytes("flows")
	if n != 60 || size > 60*2048 {
		t.Fatalf("%d flows, %d bytes stored", n, size)
	}
	// the same IPv6 /64 is one address
	codes = map[int]int{}
	for i := range 70 {
		r, _ := f.authorizeFrom(c, authorizeForm(id, "st"), fmt.Sprintf("2001:db8:1:2::%x", i+1))
		codes[r.StatusCode]++
	}
	if codes[200] != 60 || codes[429] != 10 {
		t.Fatalf("70 requests from one /64: %v", codes)
	}
	// a minute later the address may start flows again
	f.now = f.now.Add(61 * time.Second)
	if r, _ := f.authorizeFrom(c, authorizeForm(id, "st"), "198.51.100.7"); r.StatusCode != 200 {
		t.Fatalf("after a minute: %d", r.StatusCode)
	}
}

// TestAttackAuthorizeSpoofedForwardedFor: without a trusted proxy,
// X-Forwarded-For does not buy an attacker a new address.
func TestAttackAuthorizeSpoofedForwardedFor(t *testing.T) {
	f := newFixture(t, nil)
	id := f.publicClient("App")
	c := browserClient()
	codes := map[int]int{}
	for i := range 70 {
		r, _ := f.authorizeFrom(c, authorizeForm(id, "st"), fmt.Sprintf("10.0.%d.1", i))
		codes[r.StatusCode]++
	}
	if codes[200] != 60 || codes[429] != 10 {
		t.Fatalf("70 requests with spoofed X-Forwarded-For: %v", codes)
	}
}

// TestAttackAuthorizePendingCap: from many addresses, at most
// MaxPendingFlows flows are kept; beyond, 503 with Retry-After and a page.
func TestAttackAuthorizePendingCap(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.AuthorizeLimits = AuthorizeLimits{MaxPendingFlows: 50}
	})
	id := f.publicClient("App")
	c := browserClient()
	codes := map[int]int{}
	for i := range 120 {
		r, page := f.authorizeFrom(c, authorizeForm(id, "st"), fmt.Sprintf("192.0.2.%d", i))
		codes[r.StatusCode]++
		if r.StatusCode == 503 && (r.Header.Get("Retry-After") == "" || !strings.Contains(page, "Too many sign-ins")) {
			t.Fatalf("cap answer: %v %.200s", r.Header, page)
		}
	}
	if n, _ := f.storedBytes("flows"); codes[200] != 50 || codes[503] != 70 || n != 50 {
		t.Fatalf("120 flows from 120 addresses: %v, %d stored", codes, n)
	}
}

// TestAttackPARFloodBounded: /par keeps only the known parameters (never
// the whole posted form), refuses a long state, is rate limited per
// address (OAuth error JSON, 429) and capped (503).
func TestAttackPARFloodBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.AuthorizeLimits = AuthorizeLimits{MaxPushedRequests: 30}
	})
	id := f.publicClient("App")
	push := func(form url.Values, addr string) (int, map[string]any, http.Header) {
		r, b := f.postForm("/par", form, map[string]string{"X-Forwarded-For": addr})
		var m map[string]any
		json.Unmarshal([]byte(b), &m)
		return r.StatusCode, m, r.Header
	}
	form := authorizeForm(id, "st")
	form.Set("junk", strings.Repeat("j", 60<<10))
	form.Set("request", strings.Repeat("r", 1000))
	if st, m, _ := push(form, "198.51.100.1"); st != 201 {
		t.Fatalf("par: %d %v", st, m)
	}
	if n, size := f.storedBytes("par"); n != 1 || size > 2048 {
		t.Fatalf("pushed request stored: %d entries, %d bytes (the whole form?)", n, size)
	}
	if st, m, _ := push(authorizeForm(id, strings.Repeat("s", 2000)), "198.51.100.1"); st != 400 || m["error"] != "invalid_request" {
		t.Fatalf("long state pushed: %d %v", st, m)
	}
	codes := map[int]int{}
	for range 70 {
		st, m, h := push(authorizeForm(id, "st"), "198.51.100.9")
		codes[st]++
		if st == 429 && (m["error"] != "temporarily_unavailable" || h.Get("Retry-After") == "") {
			t.Fatalf("rate answer: %v %v", m, h)
		}
	}
	if codes[201] != 29 || codes[503] != 31 || codes[429] != 10 {
		t.Fatalf("70 pushes from one address: %v, want 29×201 (cap 30), 31×503, 10×429", codes)
	}
	if n, _ := f.storedBytes("par"); n != 30 {
		t.Fatalf("%d pushed requests stored, cap 30", n)
	}
}

// TestAttackUserKeyNoLockout: the reviewer's lock-out — an attacker fails
// for alice from 8 addresses (3 each), then keeps failing from fresh
// addresses whenever it may; alice in a fresh browser on her own address
// with the right password gets in at once, every time.
func TestAttackUserKeyNoLockout(t *testing.T) {
	f := proxied(t, SignInLimits{})
	id := f.publicClient("App")
	attacker := browserClient()
	_, _, af := f.startFlow(attacker, id, "http://127.0.0.1/cb")
	for a := range 8 {
		for range 3 {
			f.postLogin(attacker, af, "alice", "guess", from(fmt.Sprintf("198.51.100.%d", a+1)))
		}
	}
	for round := range 3 {
		for a := range 8 {
			f.postLogin(attacker, af, "alice", "guess", from(fmt.Sprintf("203.0.%d.%d", round, a+1)))
		}
		victim := browserClient()
		_, _, vf := f.startFlow(victim, id, "http://127.0.0.1/cb")
		if r, page := f.postLogin(victim, vf, "alice", "wonderland", from(fmt.Sprintf("192.0.2.%d", round+1))); r.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
			t.Fatalf("round %d: alice in a fresh browser: %d (Retry-After %s)", round, r.StatusCode, r.Header.Get("Retry-After"))
		}
		f.now = f.now.Add(time.Minute)
	}
	// the attacker's own addresses are still slowed
	f.postLogin(attacker, af, "alice", "guess", from("198.51.100.1"))
	if r, _ := f.postLogin(attacker, af, "alice", "guess", from("198.51.100.1")); r.StatusCode != 429 {
		t.Fatalf("attacker's address: %d, want 429", r.StatusCode)
	}
}

// TestAttackThrottleFloodKeepsBackoff: alice's record at the attacker's
// address is backing off; a flood of attempts for unique names from many
// addresses — 15 000-byte names (the reviewer's), and ≤ 256-byte names
// with unhashed long passwords (which do make records) — neither evicts it
// nor makes records that grow with the name.
func TestAttackThrottleFloodKeepsBackoff(t *testing.T) {
	const tracked = 300
	f := proxied(t, SignInLimits{MaxTracked: tracked})
	id := f.publicClient("App")
	c := browserClient()
	_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
	for range 5 {
		f.postLogin(c, fields, "alice", "guess", from("198.51.100.7"))
	}
	if r, _ := f.postLogin(c, fields, "alice", "wonderland", from("198.51.100.7")); r.StatusCode != 429 {
		t.Fatalf("alice at the attacker's address before the flood: %d", r.StatusCode)
	}
	for _, flood := range []struct {
		name     string
		nameLen  int
		password string
	}{{"15000-byte names", 15000, "x"}, {"256-byte names, long passwords", 256, strings.Repeat("p", 2000)}} {
		for a := range 40 {
			for i := range 20 {
				user := fmt.Sprintf("%03d-%02d-", a, i)
				user += strings.Repeat("n", flood.nameLen-len(user))
				f.postLogin(c, fields, user, flood.password, from(fmt.Sprintf("100.64.%d.1", a)))
			}
		}
		if r, _ := f.postLogin(c, fields, "alice", "wonderland", from("198.51.100.7")); r.StatusCode != 429 {
			t.Fatalf("after a flood of %s: alice at the attacker's address %d, want still 429", flood.name, r.StatusCode)
		}
		if n := f.as.throttle.size(); n > tracked {
			t.Fatalf("after a flood of %s: %d records", flood.name, n)
		}
		f.as.throttle.mu.Lock()
		for k := range f.as.throttle.entries {
			if len(k) != 16 {
				t.Errorf("record key of %d bytes", len(k))
			}
		}
		f.as.throttle.mu.Unlock()
	}
}

// TestThrottleOverflowBucket: when every record is backing off, attempts
// needing a new record share one slow bucket (a burst, then one a
// second), and records that stop backing off make room again.
func TestThrottleOverflowBucket(t *testing.T) {
	th := newThrottle(SignInLimits{MaxTracked: 10, BaseDelay: time.Minute, MaxDelay: time.Minute}.withDefaults())
	now := time.Unix(1e9, 0)
	for i := range 10 {
		k := []throttleKey{{key: fmt.Sprintf("hot%d", i)}}
		th.admit(now, k)
	}
	if n := th.size(); n != 10 {
		t.Fatalf("%d records", n)
	}
	admitted := 0
	for i := range 20 {
		v := th.admit(now, []throttleKey{{key: fmt.Sprintf("new%d", i), free: 3}})
		if v.Wait == 0 {
			admitted++
		} else if !v.Overflow {
			t.Fatalf("refusal not from the overflow bucket: %+v", v)
		}
	}
	if admitted != overflowBurst || th.size() != 10 {
		t.Fatalf("full table: %d admitted, %d records", admitted, th.size())
	}
	for i := range 10 { // every hot record still backs off
		if th.admit(now, []throttleKey{{key: fmt.Sprintf("hot%d", i)}}).Wait == 0 {
			t.Fatalf("hot%d evicted or reset", i)
		}
	}
	if v := th.admit(now.Add(time.Second), []throttleKey{{key: "later", free: 3}}); v.Wait != 0 {
		t.Fatalf("a second later: %+v", v)
	}
	now = now.Add(2 * time.Minute) // the backoffs are over: room again
	if v := th.admit(now, []throttleKey{{key: "fresh", free: 3}}); v.Wait != 0 || th.size() > 10 {
		t.Fatalf("after the backoffs: %+v, %d records", v, th.size())
	}
	th.mu.Lock()
	_, kept := th.entries["fresh"]
	th.mu.Unlock()
	if !kept {
		t.Fatal("no record made once room was free")
	}
}

type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// TestAttackSignInLogBounded: 1000 failed or throttled sign-ins with a
// 15 KiB name, and 1000 throttled ones with a name of control
// characters, write a few lines, not one each and never the whole name.
func TestAttackSignInLogBounded(t *testing.T) {
	logs := &lockedBuffer{}
	f := newFixture(t, func(c *Config) { c.Log = slog.New(slog.NewTextHandler(logs, nil)) })
	id := f.publicClient("App")
	c := browserClient()
	_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
	long := strings.Repeat("L", 15000)
	for range 1000 {
		f.postLogin(c, fields, long, "guess", nil)
	}
	odd := "bob\x1b[2J\u202e" + strings.Repeat("Z", 200)
	codes := map[int]int{}
	for range 1000 {
		r, _ := f.postLogin(c, fields, odd, "guess", nil)
		codes[r.StatusCode]++
	}
	if codes[429] < 990 {
		t.Fatalf("throttled attempts: %v", codes)
	}
	out := logs.b.String()
	if n := logs.Len(); n > 8<<10 {
		t.Fatalf("log grew by %d bytes for 2000 attempts: %.600s", n, out)
	}
	if strings.Contains(out, strings.Repeat("L", maxLoggedName+1)) || strings.Contains(out, "\u202e") || strings.Contains(out, `\x1b`) || strings.Contains(out, "\x1b") {
		t.Fatalf("a name went into the log unbounded or unsanitised: %.600s", out)
	}
	if !strings.Contains(out, "not_logged_before") {
		t.Fatalf("held-back count missing: %.600s", out)
	}
}

// TestAttackTossedSessionCookie: the reviewer's toss.py — the attacker's
// session cookie planted in the victim's browser (which has its own
// binding cookie) does not sign the victim in as the attacker: the
// victim's flow shows the sign-in form. Neither does a session cookie
// without any binding cookie. On https the session cookie is __Host-.
func TestAttackTossedSessionCookie(t *testing.T) {
	f := newFixture(t, nil)
	f.as.cfg.Users.Add("mallory", "attacker-pw")
	id := f.publicClient("App")
	attacker := browserClient()
	_, _, af := f.startFlow(attacker, id, "http://127.0.0.1/cb")
	r, page := f.postLogin(attacker, af, "mallory", "attacker-pw", nil)
	if r.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
		t.Fatalf("attacker's sign-in: %d", r.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range r.Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	u, _ := url.Parse(f.srv.URL)
	victim := browserClient()
	f.startFlow(victim, id, "http://127.0.0.1/cb") // the victim's own binding cookie
	victim.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: session.Value, Path: "/"}})
	resp, vpage, _ := f.startFlow(victim, id, "http://127.0.0.1/cb")
	if resp.StatusCode != 200 || !strings.Contains(vpage, `value="login"`) {
		t.Fatalf("tossed session cookie: %d %s, want the sign-in form", resp.StatusCode, resp.Header.Get("Location"))
	}
	// a session cookie alone, no binding cookie
	_, ch := pkcePair()
	req, _ := http.NewRequest("GET", f.srv.URL+"/authorize?"+url.Values{"response_type": {"code"}, "client_id": {id},
		"redirect_uri": {"http://127.0.0.1/cb"}, "code_challenge": {ch}, "code_challenge_method": {"S256"}, "resource": {resourceID}, "scope": {"mcp:read"}}.Encode(), nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session.Value})
	if resp, page := do(t, browserClient(), req); resp.StatusCode != 200 || !strings.Contains(page, `value="login"`) {
		t.Fatalf("session cookie without a binding cookie: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// the attacker's own browser still works
	if resp, _, _ := f.startFlow(attacker, id, "http://127.0.0.1/cb"); resp.StatusCode != 200 {
		t.Fatalf("attacker's own browser: %d", resp.StatusCode)
	}
	// https: __Host- prefix
	fs := newFixture(t, func(c *Config) { c.SecureCookies = true })
	w := httptest.NewRecorder()
	fs.as.setSession(w, "alice", strings.Repeat("B", 32))
	ck := w.Result().Cookies()
	if len(ck) != 1 || ck[0].Name != "__Host-"+sessionCookie || !ck[0].Secure || ck[0].Path != "/" || ck[0].Domain != "" {
		t.Fatalf("session cookie on https: %+v", ck)
	}
}

// TestAttackIntrospectionDefaultNobody: with introspection_clients empty
// (the default) no client may introspect, a configured confidential
// machine client included.
func TestAttackIntrospectionDefaultNobody(t *testing.T) {
	f := newFixture(t, nil)
	st, tok := f.tokenJSON(url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}, basicAuth("machine", "machine-secret"))
	if st != 200 {
		t.Fatalf("machine token: %d", st)
	}
	r, body := f.postForm("/introspect", url.Values{"token": {tok["access_token"].(string)}}, basicAuth("machine", "machine-secret"))
	if r.StatusCode != 403 || strings.Contains(body, `"active"`) {
		t.Fatalf("default introspection by a machine client: %d %s", r.StatusCode, body)
	}
}
