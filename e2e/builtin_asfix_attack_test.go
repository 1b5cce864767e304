//go:build e2e

package e2e

// Attacks from the review of the built-in authorization server through the
// real binary (bbolt store): a flood of stored authorization requests is
// bounded, and a session cookie tossed into another browser signs nobody
// in.

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuiltinAttackAuthorizeFlood: POST /authorize with a 60 KiB state is
// refused and stores nothing; with a 1000-byte state the pending-flow cap
// (40 here) holds, then 503; past 60 requests a minute from one address,
// 429; each with Retry-After; the state file stays small. The commit
// before stored all of them (60 KiB each).
func TestBuiltinAttackAuthorizeFlood(t *testing.T) {
	b := startBuiltin(t, "  authorize_limits:\n    max_pending_flows: 40\n")
	id := registerClient(t, b.URL, "Flood")
	br := newASBrowser(t, b.URL)
	post := func(state string) *http.Response {
		u, _ := url.Parse(authorizeURL(b.URL, id))
		form := u.Query()
		form.Set("state", state)
		req, _ := http.NewRequest("POST", b.URL+"/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := br.do(req)
		return resp
	}
	codes := map[int]int{}
	for range 50 {
		r := post(strings.Repeat("s", 1000))
		codes[r.StatusCode]++
		if r.StatusCode == 503 && r.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
	if codes[200] != 40 || codes[503] != 10 {
		t.Fatalf("50 flows: %v, want 40×200 (the cap), 10×503", codes)
	}
	for range 10 {
		if r := post(strings.Repeat("s", 60<<10)); r.StatusCode != 400 {
			t.Fatalf("60 KiB state: %d", r.StatusCode)
		}
	}
	// 60 requests this minute: the next is refused before anything is done
	if r := post("s"); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("61st request in a minute: %d %v", r.StatusCode, r.Header)
	}
	fi, err := os.Stat(filepath.Join(b.dir, "as.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2<<20 {
		t.Fatalf("state file %d bytes after the flood", fi.Size())
	}
}

// TestBuiltinAttackTossedSession: alice's session cookie copied into
// another browser (cookie tossing: another port on loopback, or a sibling
// host) does not sign that browser in: it gets the sign-in form.
func TestBuiltinAttackTossedSession(t *testing.T) {
	b := startBuiltin(t, "")
	id := registerClient(t, b.URL, "Toss")
	attacker := newASBrowser(t, b.URL)
	if r, page := attacker.login(attacker.open(id), "alice", "wonderland"); r.StatusCode != 200 || !strings.Contains(page, `value="consent"`) {
		t.Fatalf("sign-in: %d", r.StatusCode)
	}
	var session string
	for _, c := range attacker.c.Jar.Cookies(mustURL(b.URL)) {
		if c.Name == "mcpgate_as_session" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie")
	}
	victim := newASBrowser(t, b.URL)
	victim.open(id)
	victim.c.Jar.SetCookies(mustURL(b.URL), []*http.Cookie{{Name: "mcpgate_as_session", Value: session, Path: "/"}})
	victim.open(id) // fails unless the sign-in form is shown
}
