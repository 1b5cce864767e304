//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns a chromedp context driving Debian's Chromium headless
// with a fresh profile; the browser is stopped with the test.
func Chromium(t *testing.T) context.Context {
	t.Helper()
	return ChromiumWithin(t, 60*time.Second)
}

// ChromiumWithin is Chromium for a test that drives the browser for up to d.
func ChromiumWithin(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is missing: run `make e2e-deps` (installs the Debian package)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, d)
	t.Cleanup(cancel3)
	return ctx
}

// Screenshot saves a full-page PNG into e2e/artifacts/ (quality 100 makes
// chromedp capture PNG; lower values give JPEG).
func Screenshot(t *testing.T, ctx context.Context, name string) {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join(Dir(t), "artifacts")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is empty", name)
	}
}

// TestBrowserLoginAtOP: a person logs in and consents at the OP in a real
// Chromium; the authorization code arrives at a loopback redirect, exactly
// as `mcpgate login` and MCP clients will receive it.
func TestBrowserLoginAtOP(t *testing.T) {
	op := StartOP(t, "plain")
	got := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		w.Write([]byte("<html><body><h1>Signed in</h1></body></html>"))
	}))
	defer cb.Close()
	verifier := make([]byte, 32)
	rand.Read(verifier)
	v := base64.RawURLEncoding.EncodeToString(verifier)
	sum := sha256.Sum256([]byte(v))
	q := url.Values{
		"client_id": {"mcp-app"}, "response_type": {"code"}, "redirect_uri": {cb.URL + "/callback"},
		"scope": {"openid mcp:read"}, "state": {"s-123"}, "resource": {"http://127.0.0.1:8080/mcp"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	ctx := Chromium(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(op.Issuer+"/auth?"+q.Encode()),
		chromedp.WaitVisible(`input[name=login]`),
	); err != nil {
		t.Fatalf("login page: %v", err)
	}
	Screenshot(t, ctx, "op-login")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(`input[name=login]`, "alice"),
		chromedp.SendKeys(`input[name=password]`, "wonderland"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`button[type=submit]`),
	); err != nil {
		t.Fatalf("submit login: %v", err)
	}
	Screenshot(t, ctx, "op-consent")
	if err := chromedp.Do(ctx, chromedp.Click(`button[type=submit]`)); err != nil {
		t.Fatalf("consent: %v", err)
	}
	select {
	case v := <-got:
		if v.Get("code") == "" || v.Get("state") != "s-123" || v.Get("iss") != op.Issuer {
			t.Fatalf("callback %v", v)
		}
	case <-time.After(30 * time.Second):
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("no callback; browser at %s", strings.TrimSpace(loc))
	}
}

// TestBrowserClientLogin: `mcpgate login --no-browser` prints the
// authorization URL; a person completes login and consent at the OP in a
// real Chromium and lands on mcpgate's own loopback callback page, which
// says they are signed in. Screenshot: e2e/artifacts/mcpgate-callback.png.
func TestBrowserClientLogin(t *testing.T) {
	_, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	l, u := c.startLogin(t, authorizationURL, "--store", "file", "--no-browser", mcpURL)
	ctx := Chromium(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(`input[name=login]`),
		chromedp.SendKeys(`input[name=login]`, "alice"), chromedp.SendKeys(`input[name=password]`, "wonderland"),
		chromedp.Click(`button[type=submit]`)); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("login page: %v (at %s)", err, loc)
	}
	// the next page is the OP's consent form, then mcpgate's callback page;
	// each step waits for the new page's own content, never for an element
	// the previous page also had
	pageState := func() string {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			// a navigation in progress makes evaluation fail: try again
			state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main h1') ? 'done' :
				(document.querySelector('input[name=prompt][value=consent]') ? 'consent' : '')`))
			if err == nil && state != "" {
				return state
			}
			time.Sleep(100 * time.Millisecond)
		}
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("neither the consent page nor the callback page appeared (at %s)", loc)
		return ""
	}
	for step := 0; pageState() == "consent"; step++ {
		if step > 2 {
			t.Fatal("the consent page keeps coming back")
		}
		if err := chromedp.Do(ctx, chromedp.Click(`button[type=submit]`)); err != nil {
			t.Fatalf("consent: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if title, err := chromedp.Run(ctx, chromedp.Text(`main h1`)); err != nil || strings.TrimSpace(title) != "Signed in" {
		t.Fatalf("callback page title %q: %v", title, err)
	}
	Screenshot(t, ctx, "mcpgate-callback")
	if out := l.wait(30 * time.Second); !strings.Contains(out, "alice") {
		t.Fatalf("mcpgate login:\n%s", out)
	}
}
