package mcpclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// TestTransportJSONAnswerBound (hole: a JSON answer was read up to 64 MiB,
// four times the largest message mcpgate accepts anywhere else): a valid
// JSON-RPC response one byte over mcp.MaxMessageBytes is refused with an
// error naming the limit; one within it is delivered.
func TestTransportJSONAnswerBound(t *testing.T) {
	for _, over := range []bool{false, true} {
		pad := mcp.MaxMessageBytes - len(`{"jsonrpc":"2.0","id":1,"result":{"x":""}}`)
		if over {
			pad++
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"x":"%s"}}`, strings.Repeat("A", pad))
		}))
		tr := &Transport{URL: srv.URL, HTTP: srv.Client()}
		var got int
		err := tr.Post(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), func(b []byte) { got = len(b) })
		srv.Close()
		switch {
		case !over && (err != nil || got != mcp.MaxMessageBytes):
			t.Errorf("a %d-byte answer: %v (%d delivered)", mcp.MaxMessageBytes, err, got)
		case over && (err == nil || !strings.Contains(err.Error(), fmt.Sprint(mcp.MaxMessageBytes))):
			t.Errorf("a %d-byte answer: %v (%d delivered), want an error naming the limit", mcp.MaxMessageBytes+1, err, got)
		}
	}
}

// TestTransportSSEEventBound: an event-stream answer is bounded by the
// same constant, not by the SSE reader's own default.
func TestTransportSSEEventBound(t *testing.T) {
	pad := 8 << 20 // over the reader's former 4 MiB default, under the message limit
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"%s\"}}\n\n", strings.Repeat("A", pad))
	}))
	defer srv.Close()
	tr := &Transport{URL: srv.URL, HTTP: srv.Client()}
	var got int
	if err := tr.Post(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), func(b []byte) { got = len(b) }); err != nil || got < pad {
		t.Fatalf("an 8 MiB event: %v (%d delivered)", err, got)
	}
}
