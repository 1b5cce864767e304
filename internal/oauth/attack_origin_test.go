package oauth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/origin"
)

func TestApplyOnlyToTheServersOrigin(t *testing.T) {
	s := NewCredential(NewEngine(NewGuard("http://127.0.0.1:9000/mcp", false, false), nil, nil), newMemStore(),
		Config{ServerURL: "http://127.0.0.1:9000/mcp", NonInteractive: true})
	for _, u := range []string{"http://127.0.0.1:9001/mcp", "https://127.0.0.1:9000/mcp", "http://localhost:9000/mcp", "http://evil.example/mcp"} {
		req, _ := http.NewRequest("POST", u, nil)
		if err := s.Apply(context.Background(), req, nil); !errors.Is(err, origin.ErrOther) {
			t.Errorf("Apply to %s: %v", u, err)
		}
		if req.Header.Get("Authorization") != "" || req.Header.Get("DPoP") != "" {
			t.Errorf("Apply to %s set a credential", u)
		}
	}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:9000/other", nil)
	if err := s.Apply(context.Background(), req, nil); err != nil {
		t.Errorf("Apply to its own origin: %v", err)
	}
}

// TestMCPHTTPClientGuardsDialsAndRedirects: the MCP client's dialer is the
// SSRF guard (a server on a public address may not send it to loopback,
// by redirect or otherwise), and redirects stay on the origin.
func TestMCPHTTPClientGuardsDialsAndRedirects(t *testing.T) {
	hit := false
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer inner.Close()
	c := NewMCPHTTPClient(NewGuard("https://203.0.113.7/mcp", false, false), nil)
	if _, err := c.Get(inner.URL); err == nil || !strings.Contains(err.Error(), "SSRF") || hit {
		t.Fatalf("dial to loopback from a public server's client: %v (hit %v)", err, hit)
	}

	away := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer away.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/same" {
			io.WriteString(w, "ok")
			return
		}
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, "/same", http.StatusTemporaryRedirect)
			return
		}
		http.Redirect(w, r, away.URL+"/x", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c = NewMCPHTTPClient(NewGuard(srv.URL, false, false), nil)
	req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader("{}"))
	req.Header.Set("X-Api-Key", "secret")
	_, err := c.Do(req)
	if !errors.Is(err, origin.ErrOther) || hit || !strings.Contains(err.Error(), origin.OfString(away.URL)) {
		t.Fatalf("cross-origin redirect: %v (hit %v)", err, hit)
	}
	resp, err := c.Get(srv.URL + "/hop")
	if err != nil {
		t.Fatalf("same-origin redirect: %v", err)
	}
	resp.Body.Close()
}
