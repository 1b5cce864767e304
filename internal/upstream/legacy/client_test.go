package legacy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// serveSSE is the fake upstream's GET stream: the endpoint event, then each
// message POSTed to it, until the client goes away.
func serveSSE(w http.ResponseWriter, r *http.Request, msgs <-chan string) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, "event: endpoint\ndata: /message?sid=7\n\n")
	w.(http.Flusher).Flush()
	for {
		select {
		case m := <-msgs:
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", m)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// TestDialerRoundTrip: the HTTP+SSE upstream Conn (over legacysse) posts
// to the endpoint with the session's and the configured headers and
// queues the stream's messages for Recv.
func TestDialerRoundTrip(t *testing.T) {
	msgs := make(chan string, 4)
	var sawHeaders bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Subject") == "alice" && r.Header.Get("X-Upstream-Key") == "k" {
			sawHeaders = true
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), "refuse") {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			msgs <- string(b)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		serveSSE(w, r, msgs)
	}))
	defer srv.Close()
	dial := Dialer(ClientOptions{URL: srv.URL + "/sse", Header: http.Header{"X-Upstream-Key": {"k"}}})
	c, err := dial(context.Background(), upstream.Caller{Owner: "alice", Header: http.Header{"X-Subject": {"alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	msg := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if err := c.Send(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Recv(context.Background())
	if err != nil || string(got) != msg {
		t.Fatalf("Recv = %s, %v; want the echo", got, err)
	}
	if err := c.Send(context.Background(), []byte(`{"refuse":true}`)); err == nil || !strings.Contains(err.Error(), "status 400") {
		t.Fatalf("refused Send: %v", err)
	}
	if !sawHeaders {
		t.Error("the upstream never saw the session and configured headers")
	}
	c.Close()
	if _, err := c.Recv(context.Background()); err == nil {
		t.Fatal("Recv after Close returned no error")
	}
}

// TestDialerRefusesOtherOrigin: an endpoint on another origin is refused.
func TestDialerRefusesOtherOrigin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: endpoint\ndata: http://127.0.0.1:1/message\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	_, err := Dialer(ClientOptions{URL: srv.URL})(context.Background(), upstream.Caller{})
	if err == nil || !strings.Contains(err.Error(), "refusing to post there") {
		t.Fatalf("err = %v, want the endpoint refused", err)
	}
}

// TestStreamableDialer: JSON and SSE answers are queued, the session id
// and negotiated version are sent on later requests, Close deletes the
// session.
func TestStreamableDialer(t *testing.T) {
	deleted := make(chan string, 1)
	var laterSID, laterVersion string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodDelete:
			deleted <- r.Header.Get("Mcp-Session-Id")
			return
		case http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(b), `"initialize"`):
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}`)
		case strings.Contains(string(b), `"notifications/initialized"`):
			w.WriteHeader(http.StatusAccepted)
		case strings.Contains(string(b), `"fail"`):
			w.WriteHeader(http.StatusBadGateway)
		default:
			laterSID, laterVersion = r.Header.Get("Mcp-Session-Id"), r.Header.Get("Mcp-Protocol-Version")
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n")
		}
	}))
	defer srv.Close()
	c, err := StreamableDialer(ClientOptions{URL: srv.URL})(context.Background(), upstream.Caller{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"fail"}`,
	} {
		if err := c.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// Each message is POSTed on its own; the answers to tools/list and to
	// the failing call may come back in either order (the test once
	// expected a fixed order and failed under load).
	want := map[string]bool{`"protocolVersion"`: false, `"id":2`: false, `"id":3`: false}
	for range want {
		got, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		matched := false
		for w, seen := range want {
			if !seen && strings.Contains(string(got), w) {
				want[w], matched = true, true
				break
			}
		}
		if !matched {
			t.Fatalf("Recv = %s: not one of the answers still expected %v", got, want)
		}
	}
	if laterSID != "s1" || laterVersion != "2025-06-18" {
		t.Errorf("later request carried session %q version %q", laterSID, laterVersion)
	}
	c.Close()
	if sid := <-deleted; sid != "s1" {
		t.Errorf("DELETE for session %q", sid)
	}
}

// TestDialerStreamOutlivesClientTimeout: the HTTP client's Timeout
// bounds each POST, not the SSE stream (review F4: the gateway's client,
// Timeout 30s, ended every legacy SSE session and task host 30 s after it
// opened). A short timeout stands in for the 30 s.
func TestDialerStreamOutlivesClientTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	msgs := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), "hang") {
				<-r.Context().Done() // a POST beyond the bound
				return
			}
			msgs <- string(b)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		serveSSE(w, r, msgs)
	}))
	defer srv.Close()
	c, err := Dialer(ClientOptions{URL: srv.URL + "/sse", HTTPClient: &http.Client{Timeout: timeout}})(context.Background(), upstream.Caller{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(3 * timeout) // the old code's stream has ended by now
	msg := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if err := c.Send(context.Background(), []byte(msg)); err != nil {
		t.Fatalf("Send after the client timeout: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := c.Recv(ctx); err != nil || string(got) != msg {
		t.Fatalf("Recv after the client timeout = %s, %v; want the echo on the live stream", got, err)
	}
	if err := c.Send(context.Background(), []byte(`{"hang":1}`)); err == nil {
		t.Fatal("a POST beyond the client's timeout succeeded: POSTs must stay bounded")
	}
}
