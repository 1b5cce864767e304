package gateway

import (
	"errors"
	"io"
	"net/http"
	"testing"
)

type failTransport struct{ calls int }

func (f *failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls++
	return nil, errors.New("network unreachable")
}

// TestLocalKeysClient: the built-in server's JWKS at <public_url>/jwks is
// answered by its own handler, never over the network (a cold cluster
// behind a load balancer that sends only to ready replicas never became
// ready: each replica waited for keys only a ready replica could serve);
// every other request goes out as before.
func TestLocalKeysClient(t *testing.T) {
	as := http.NewServeMux()
	as.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"keys":[]}`)
	})
	net := &failTransport{}
	c := localKeysClient(&http.Client{Transport: net}, "https://mcp.example.com", as)
	resp, err := c.Get("https://mcp.example.com/jwks")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != `{"keys":[]}` || resp.Header.Get("Content-Type") != "application/json" || net.calls != 0 {
		t.Fatalf("local JWKS: %d %q %v, network calls %d", resp.StatusCode, b, resp.Header, net.calls)
	}
	for _, u := range []string{"https://mcp.example.com/jwks?x=1", "https://mcp.example.com/other", "https://idp.example.com/jwks", "http://mcp.example.com/jwks"} {
		if _, err := c.Get(u); err == nil || net.calls == 0 {
			t.Fatalf("%s was answered locally", u)
		}
	}
	if localKeysClient(http.DefaultClient, "https://x", nil) != http.DefaultClient {
		t.Fatal("without a built-in server the client must be unchanged")
	}
}
