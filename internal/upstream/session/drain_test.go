package session

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestStreamEndsWithRetryAtShutdown: a GET stream whose context ends with
// upstream.ErrShutdown (the gateway's final phase) carries an SSE retry
// field before it ends; one that ends because the client left does not.
func TestStreamEndsWithRetryAtShutdown(t *testing.T) {
	f := start(t, nil, nil)
	sid := f.init(t)
	shutdown, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	// As the gateway's endsAtShutdown: the request ends with shutdown's cause.
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancelCause(r.Context())
		defer context.AfterFunc(shutdown, func() { cancel(context.Cause(shutdown)) })()
		standalone(f.srv).ServeHTTP(w, r.WithContext(ctx))
	}))
	defer h.Close()
	req, _ := http.NewRequest("GET", h.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	r, err := http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, r)
	}
	defer r.Body.Close()
	first := make([]byte, 3)
	if _, err := io.ReadFull(r.Body, first); err != nil || string(first) != "id:" {
		t.Fatalf("priming event: %q %v", first, err)
	}
	stop(upstream.ErrShutdown)
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}()
	select {
	case rest := <-got:
		if !strings.Contains(rest, "retry: 1000\n\n") {
			t.Fatalf("stream ended without a retry field: %q", rest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
}
