package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHashLimiterQueue: slots, a bounded queue and its timeout; nothing
// waits beyond them.
func TestHashLimiterQueue(t *testing.T) {
	l := newHashLimiter(1, 1, 50*time.Millisecond)
	hold, held := make(chan struct{}), make(chan struct{})
	go l.run(context.Background(), func() { close(held); <-hold })
	<-held
	queued := make(chan error)
	go func() { queued <- l.run(context.Background(), func() {}) }()
	for l.queue.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	// the queue is full: refused at once
	if err := l.run(context.Background(), func() { t.Error("ran beyond the queue") }); !errors.Is(err, errHashBusy) {
		t.Fatalf("beyond the queue: %v", err)
	}
	// the queued one gives up after the timeout
	if err := <-queued; !errors.Is(err, errHashBusy) {
		t.Fatalf("queued past the timeout: %v", err)
	}
	// a cancelled request leaves the queue
	ctx, cancel := context.WithCancel(context.Background())
	go func() { queued <- l.run(ctx, func() {}) }()
	for l.queue.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-queued; !errors.Is(err, errHashBusy) || l.queue.Load() != 0 {
		t.Fatalf("cancelled: %v, queue %d", err, l.queue.Load())
	}
	close(hold)
	for l.active.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	if err := l.run(context.Background(), func() {}); err != nil || l.peak.Load() != 1 {
		t.Fatalf("after release: %v peak %d", err, l.peak.Load())
	}
}

// TestSignInHashingPeak: 32 parallel wrong sign-ins (half for unknown
// users, whose dummy hash goes through the same slots) never hash more
// than MaxConcurrentHashes at once; those beyond the queue get 503 with
// Retry-After and the login form again.
func TestSignInHashingPeak(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.SignIn = SignInLimits{MaxConcurrentHashes: 2, MaxQueuedHashes: 4, HashQueueTimeout: time.Minute}
	})
	id := f.publicClient("App")
	const n = 32
	var wg sync.WaitGroup
	var mu sync.Mutex // guards codes
	codes := map[int]int{}
	for i := range n {
		c := browserClient()
		_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", i)
			if i%2 == 0 {
				user = "alice"
			}
			resp, page := f.postLogin(c, fields, user, "wrong", nil)
			if resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" || !strings.Contains(page, `name="csrf"`)) {
				t.Errorf("busy answer: %v %.200s", resp.Header, page)
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if p := f.as.hashes.peak.Load(); p > 2 || p == 0 {
		t.Fatalf("peak concurrent hashes %d, want ≤ 2", p)
	}
	if codes[503] == 0 || codes[401]+codes[503]+codes[429] != n {
		t.Fatalf("answers %v", codes)
	}
	t.Logf("answers %v, peak %d", codes, f.as.hashes.peak.Load())
}

// proxied is a fixture behind a trusted proxy, so tests can speak from
// several addresses (X-Forwarded-For).
func proxied(t *testing.T, limits SignInLimits) *fixture {
	return newFixture(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.SignIn = limits
	})
}

// signOut drops the session cookie (the device cookie stays).
func (f *fixture) signOut(c *http.Client) {
	u, _ := url.Parse(f.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1}})
}

func from(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }

// TestThrottleNoVictimLockout: an attacker failing for alice from one
// address slows only that address; alice from another address, and alice
// in a browser that signed in before (device cookie) from the attacker's
// own address, sign in at once. A distributed attack on alice slows
// nobody but the attacking addresses.
func TestThrottleNoVictimLockout(t *testing.T) {
	f := proxied(t, SignInLimits{UserFailuresBeforeDelay: 10})
	id := f.publicClient("App")
	victim := browserClient()
	_, _, vf := f.startFlow(victim, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(victim, vf, "alice", "wonderland", from("203.0.113.9")); r.StatusCode != 200 {
		t.Fatalf("first sign-in: %d", r.StatusCode)
	}
	attacker := browserClient()
	_, _, af := f.startFlow(attacker, id, "http://127.0.0.1/cb")
	for range 30 {
		f.postLogin(attacker, af, "alice", "guess", from("198.51.100.7"))
	}
	if r, _ := f.postLogin(attacker, af, "alice", "guess", from("198.51.100.7")); r.StatusCode != 429 {
		t.Fatalf("attacker not throttled: %d", r.StatusCode)
	}
	// alice elsewhere, a fresh browser: not slowed by the attacker's failures
	fresh := browserClient()
	_, _, ff := f.startFlow(fresh, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(fresh, ff, "alice", "wonderland", from("192.0.2.44")); r.StatusCode != 200 {
		t.Fatalf("alice from another address: %d", r.StatusCode)
	}
	// alice's known browser behind the attacker's address (same NAT)
	f.signOut(victim)
	_, _, vf = f.startFlow(victim, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(victim, vf, "alice", "wonderland", from("198.51.100.7")); r.StatusCode != 200 {
		t.Fatalf("alice's known browser at the attacker's address: %d", r.StatusCode)
	}
	// a distributed attack: one failure each from many addresses; the
	// user-name key only counts (it would lock alice out of every new
	// browser), so a new browser signs in at once
	for i := range 12 {
		f.postLogin(attacker, af, "alice", "guess", from(fmt.Sprintf("100.64.0.%d", i+1)))
	}
	fresh2 := browserClient()
	_, _, ff2 := f.startFlow(fresh2, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(fresh2, ff2, "alice", "wonderland", from("192.0.2.99")); r.StatusCode != 200 {
		t.Fatalf("new browser during a distributed attack: %d, want 200 (never locked out)", r.StatusCode)
	}
	f.signOut(victim)
	_, _, vf = f.startFlow(victim, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(victim, vf, "alice", "wonderland", from("192.0.2.100")); r.StatusCode != 200 {
		t.Fatalf("alice's known browser during a distributed attack: %d", r.StatusCode)
	}
}

func atoiOr(s string, d int) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return d
	}
	return n
}

// TestThrottleSprayingAndSpoofing: one address trying many user names is
// slowed after AddressFailuresBeforeDelay; without a trusted proxy
// X-Forwarded-For changes nothing; a device cookie for one user does not
// exempt tries for other names.
func TestThrottleSprayingAndSpoofing(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SignIn = SignInLimits{AddressFailuresBeforeDelay: 5} })
	f.as.cfg.Users.Add("mallory", "attacker-pw")
	id := f.publicClient("App")
	c := browserClient()
	_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
	if r, _ := f.postLogin(c, fields, "mallory", "attacker-pw", nil); r.StatusCode != 200 {
		t.Fatalf("attacker's own sign-in: %d", r.StatusCode)
	}
	f.signOut(c)
	_, _, fields = f.startFlow(c, id, "http://127.0.0.1/cb")
	var last int
	for i := range 8 {
		// a new spoofed address each time: ignored, the peer is not a trusted proxy
		r, _ := f.postLogin(c, fields, fmt.Sprintf("victim%d", i), "guess", from(fmt.Sprintf("10.9.9.%d", i)))
		last = r.StatusCode
	}
	if last != 429 {
		t.Fatalf("spraying 8 names from one address: last answer %d, want 429", last)
	}
}

// TestThrottleTableBounded: failures for many names from many addresses
// keep at most MaxTracked records.
func TestThrottleTableBounded(t *testing.T) {
	th := newThrottle(SignInLimits{MaxTracked: 100, BaseDelay: time.Second, MaxDelay: time.Minute}.withDefaults())
	now := time.Unix(1e9, 0)
	for i := range 5000 {
		th.admit(now, []throttleKey{{key: fmt.Sprintf("u%d", i), free: 3}, {key: fmt.Sprintf("a%d", i%300), free: 20}})
		now = now.Add(time.Millisecond)
	}
	if n := th.size(); n > 100 {
		t.Fatalf("%d records, want ≤ 100", n)
	}
	// a key over its limit stays throttled while newer keys come in
	k := []throttleKey{{key: "hot", free: 0}}
	th.admit(now, k)
	if th.admit(now, k).Wait == 0 {
		t.Fatal("hot key not throttled")
	}
	// the wait is capped and a long-silent key is forgotten
	for range 100 {
		now = now.Add(2 * time.Minute)
		th.admit(now, k)
	}
	if w := th.admit(now, k).Wait; w > time.Minute {
		t.Fatalf("wait %s above MaxDelay", w)
	}
	now = now.Add(2 * time.Hour)
	if w := th.admit(now, k).Wait; w != 0 {
		t.Fatalf("forgotten key still waits %s", w)
	}
}

// TestLoginFormLimits: oversized names, passwords and forms are refused
// without hashing.
func TestLoginFormLimits(t *testing.T) {
	f := newFixture(t, nil)
	id := f.publicClient("App")
	c := browserClient()
	_, _, fields := f.startFlow(c, id, "http://127.0.0.1/cb")
	before := f.as.hashes.peak.Load()
	if r, _ := f.postLogin(c, fields, "alice", strings.Repeat("p", 5000), nil); r.StatusCode != 401 {
		t.Fatalf("long password: %d", r.StatusCode)
	}
	if r, _ := f.postLogin(c, fields, strings.Repeat("n", 300), "x", nil); r.StatusCode != 401 {
		t.Fatalf("long name: %d", r.StatusCode)
	}
	if f.as.hashes.peak.Load() != before {
		t.Fatal("an oversized value was hashed")
	}
	if r, _ := f.postLogin(c, fields, "alice", strings.Repeat("p", 20<<10), nil); r.StatusCode != 400 {
		t.Fatalf("oversized form: %d", r.StatusCode)
	}
}

// TestDisplay: what every page shows of a supplied string.
func TestDisplay(t *testing.T) {
	for in, want := range map[string]string{
		"Claude":                 "Claude",
		"Claude\u202Eexe.ppa":    "Claude⟨U+202E⟩exe.ppa",
		"a\u2066b\u2069c":        "a⟨U+2066⟩b⟨U+2069⟩c",
		"a\u200Bb":               "a⟨U+200B⟩b",
		"a\x00b\x1b[31m":         "a⟨U+0000⟩b⟨U+001B⟩[31m",
		"a\u00A0b":               "a⟨U+00A0⟩b",
		"a\xffb":                 "a⟨invalid⟩b",
		"Zoë 日本 مرحبا":           "Zoë 日本 مرحبا",
		"x\U000E0041y":           "x⟨U+E0041⟩y", // tag character
		"\uE000private":          "⟨U+E000⟩private",
		strings.Repeat("é", 200): strings.Repeat("é", maxDisplayRunes) + "…",
	} {
		if got := display(in); got != want {
			t.Errorf("display(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:8765/cb":         "this computer (http://127.0.0.1:8765)",
		"http://localhost/cb":              "this computer (http://localhost)",
		"https://app.example/cb?x=1":       "https://app.example",
		"https://аpple.example/cb":         "https://%D0%B0pple.example", // Cyrillic а
		"https://evil.example:8443/cb":     "https://evil.example:8443",
		"com.example.app:/oauth2redirect":  "com.example.app: (an application on this device)",
		"https://user@good.example@bad/cb": "https://bad",
	} {
		if got := displayHost(in); got != want {
			t.Errorf("displayHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClientAddr: X-Forwarded-For counts only from a trusted proxy, and
// IPv6 addresses count per /64.
func TestClientAddr(t *testing.T) {
	s := &Server{proxies: parseProxies([]string{"10.0.0.1", "fd00::/8"})}
	for _, tc := range []struct{ remote, xff, want string }{
		{"192.0.2.1:5", "203.0.113.5", "192.0.2.1"},
		{"10.0.0.1:5", "203.0.113.5", "203.0.113.5"},
		{"10.0.0.1:5", "203.0.113.5, 10.0.0.1", "203.0.113.5"},
		{"10.0.0.1:5", "1.2.3.4, 203.0.113.5", "203.0.113.5"}, // the client's own prefix is not believed
		{"[2001:db8:1:2:3:4:5:6]:5", "", "2001:db8:1:2::/64"},
		{"[fd00::1]:5", "2001:db8:9:9::1", "2001:db8:9:9::/64"},
	} {
		r := httptest.NewRequest("POST", "/login", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("clientAddr(%s, %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// TestBrowserCookieHostPrefix: on https the binding cookie is
// __Host-prefixed and Secure, and a plain-named cookie a sibling
// subdomain could plant is not taken as the binding.
func TestBrowserCookieHostPrefix(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SecureCookies = true })
	id := f.publicClient("App")
	_, ch := pkcePair()
	req, _ := http.NewRequest("GET", f.srv.URL+"/authorize?"+url.Values{"response_type": {"code"}, "client_id": {id},
		"redirect_uri": {"http://127.0.0.1/cb"}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode(), nil)
	planted := strings.Repeat("A", 32)
	req.AddCookie(&http.Cookie{Name: browserCookie, Value: planted})
	resp, page := do(t, browserClient(), req)
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-"+browserCookie {
			set = c
		}
	}
	if set == nil || !set.Secure || set.Path != "/" || set.Domain != "" || set.Value == planted {
		t.Fatalf("binding cookie: %+v", set)
	}
	if formFields(page).Get("csrf") == f.as.loginCSRF(formFields(page).Get("flow"), planted) {
		t.Fatal("the planted cookie became the binding")
	}
}
