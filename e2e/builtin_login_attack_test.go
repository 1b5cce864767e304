//go:build e2e

package e2e

// Attacks on the built-in authorization server's sign-in through the real
// binary (issue 11, holes 3 and 4): parallel wrong passwords within the
// hashing budget, repeated wrong passwords slowed, login CSRF from a
// second browser refused, an unverified client's bidi name neutralised on
// the consent page in Chromium.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

type asBrowser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newASBrowser(t *testing.T, base string) *asBrowser {
	jar, _ := cookiejar.New(nil)
	return &asBrowser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var asHidden = regexp.MustCompile(`name="(flow|csrf)" value="([^"]+)"`)

func (b *asBrowser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// registerClient registers a public client with a loopback redirect.
func registerClient(t *testing.T, base, name string) string {
	body, _ := json.Marshal(map[string]any{"client_name": name, "redirect_uris": []string{"http://127.0.0.1:9/cb"}, "token_endpoint_auth_method": "none"})
	resp, err := http.Post(base+"/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	id, _ := out["client_id"].(string)
	if resp.StatusCode != 201 || id == "" {
		t.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return id
}

func authorizeURL(base, clientID string) string {
	v := make([]byte, 32)
	rand.Read(v)
	h := sha256.Sum256([]byte(base64.RawURLEncoding.EncodeToString(v)))
	return base + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"state": {"s"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(h[:])}, "code_challenge_method": {"S256"}}.Encode()
}

// open loads the login page and returns its form fields.
func (b *asBrowser) open(clientID string) url.Values {
	req, _ := http.NewRequest("GET", authorizeURL(b.base, clientID), nil)
	resp, page := b.do(req)
	if resp.StatusCode != 200 || !strings.Contains(page, `value="login"`) {
		b.t.Fatalf("login page: %d %.300s", resp.StatusCode, page)
	}
	v := url.Values{}
	for _, m := range asHidden.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

func (b *asBrowser) login(fields url.Values, user, password string) (*http.Response, string) {
	form := url.Values{"flow": {fields.Get("flow")}, "csrf": {fields.Get("csrf")}, "login": {user}, "password": {password}}
	req, _ := http.NewRequest("POST", b.base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// vmHWM is the process's peak resident set in KiB.
func vmHWM(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestBuiltinLoginAttackParallelWrongPasswords: 32 parallel wrong
// passwords (known and unknown names, each from its own browser) leave
// the gateway's peak resident set under 600 MiB; 7c040dc hashed all 32 at
// once (64 MiB each, 2.2 GiB). Those beyond the hashing queue are told to
// come back (503 with Retry-After), not parked.
func TestBuiltinLoginAttackParallelWrongPasswords(t *testing.T) {
	b := startBuiltin(t, "")
	id := registerClient(t, b.URL, "Flood")
	const n = 32
	browsers := make([]*asBrowser, n)
	fields := make([]url.Values, n)
	for i := range browsers {
		browsers[i] = newASBrowser(t, b.URL)
		fields[i] = browsers[i].open(id)
	}
	pid := b.Proc.cmd.Process.Pid
	before := vmHWM(t, pid)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice" // a few for alice: the throttle is not what keeps memory down
			if i%8 != 0 {
				user = fmt.Sprintf("nobody%d", i)
			}
			resp, _ := browsers[i].login(fields[i], user, "wrong-"+strconv.Itoa(i))
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	peak := vmHWM(t, pid)
	t.Logf("answers %v; VmHWM %d MiB before, %d MiB after", codes, before>>10, peak>>10)
	if peak>>10 >= 600 {
		t.Fatalf("32 parallel wrong passwords: peak RSS %d MiB, budget 600 MiB (answers %v)", peak>>10, codes)
	}
	if codes[401]+codes[503]+codes[429] != n {
		t.Fatalf("answers %v", codes)
	}
}

// TestBuiltinLoginAttackRepeatedWrongPasswords: wrong passwords in a row
// for alice from one browser are answered 429 with Retry-After and a
// "wait" message after the first few — no hashing — while alice's own
// browser, which signed in before, still signs in at once.
func TestBuiltinLoginAttackRepeatedWrongPasswords(t *testing.T) {
	b := startBuiltin(t, "")
	id := registerClient(t, b.URL, "Guesser")
	alice := newASBrowser(t, b.URL)
	if resp, page := alice.login(alice.open(id), "alice", "wonderland"); resp.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
		t.Fatalf("alice's first sign-in: %d", resp.StatusCode)
	}
	attacker := newASBrowser(t, b.URL)
	fields := attacker.open(id)
	var codes []int
	var waitPage string
	for range 12 {
		resp, page := attacker.login(fields, "alice", "guess")
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && waitPage == "" {
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			waitPage = page
		}
	}
	if slicesCount(codes, 429) < 8 || !strings.Contains(waitPage, "Too many failed sign-ins") {
		t.Fatalf("12 wrong passwords in a row: %v, want 429 after the first few\n%.300s", codes, waitPage)
	}
	// alice's browser (device cookie) from the same address: not locked out
	alice.c.Jar.SetCookies(mustURL(b.URL), []*http.Cookie{{Name: "mcpgate_as_session", Value: "", Path: "/", MaxAge: -1}})
	if resp, page := alice.login(alice.open(id), "alice", "wonderland"); resp.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
		t.Fatalf("alice's own browser during the attack: %d %.300s", resp.StatusCode, page)
	}
}

func slicesCount(s []int, v int) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

// TestBuiltinLoginAttackCSRF: a login form loaded in the attacker's
// browser and posted from the victim's (a second cookie jar) with the
// attacker's credentials is refused, and no session is set there.
func TestBuiltinLoginAttackCSRF(t *testing.T) {
	b := startBuiltin(t, "")
	id := registerClient(t, b.URL, "CSRF")
	attacker := newASBrowser(t, b.URL)
	fields := attacker.open(id)
	victim := newASBrowser(t, b.URL)
	resp, page := victim.login(fields, "alice", "wonderland")
	if resp.StatusCode != 403 || strings.Contains(page, `value="consent"`) {
		t.Fatalf("login form from a second browser: %d %.300s", resp.StatusCode, page)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "mcpgate_as_session" {
			t.Fatal("a session was set in the second browser")
		}
	}
	// the browser that loaded it signs in
	if resp, _ := attacker.login(fields, "alice", "wonderland"); resp.StatusCode != 200 {
		t.Fatalf("same browser: %d", resp.StatusCode)
	}
}

// TestBuiltinLoginAttackUnverifiedClientInChromium: registration refuses a
// client name with a right-to-left override; a dynamically registered
// client with a look-alike name is marked unverified on Chromium's consent
// page, which shows where the browser returns (screenshot
// builtin-consent-unverified.png). How the pages show an override that a
// stored record still holds is unit-tested (TestAttackClientNameOnPages).
func TestBuiltinLoginAttackUnverifiedClientInChromium(t *testing.T) {
	b := startBuiltin(t, "")
	body, _ := json.Marshal(map[string]any{"client_name": "mcpgate Official\u202E gnp.exe", "redirect_uris": []string{"http://127.0.0.1:9/cb"}, "token_endpoint_auth_method": "none"})
	resp, err := http.Post(b.URL+"/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(answer), "invalid_client_metadata") || !strings.Contains(string(answer), "client_name") {
		t.Fatalf("a client name with U+202E was not refused: %d %s", resp.StatusCode, answer)
	}
	id := registerClient(t, b.URL, "mcpgate Official")
	ctx := Chromium(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(authorizeURL(b.URL, id)), chromedp.WaitVisible(`#login`)); err != nil {
		t.Fatalf("login page: %v", err)
	}
	Screenshot(t, ctx, "builtin-login-unverified")
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#login`, "alice"), chromedp.SendKeys(`#password`, "wonderland"), chromedp.Submit(`#password`)); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if err := waitFor(ctx, `document.querySelector('button[name=deny]') !== null`); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("no consent page: %v\n%s", err, text)
	}
	Screenshot(t, ctx, "builtin-consent-unverified")
	text, err := chromedp.Run(ctx, chromedp.Text(`main`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Unverified application", "registered by anyone", "this computer (http://127.0.0.1:9)"} {
		if !strings.Contains(text, want) {
			t.Errorf("consent page lacks %q:\n%s", want, text)
		}
	}
	if strings.ContainsRune(text, '\u202E') {
		t.Errorf("consent page carries the raw override:\n%q", text)
	}
}
