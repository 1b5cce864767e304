package mcp

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// TestWriteError: every HTTP refusal is a JSON-RPC error response with the
// request's id (null when unknown), its length, and never cached.
func TestWriteError(t *testing.T) {
	for _, id := range []json.RawMessage{nil, json.RawMessage(`7`), json.RawMessage(`"a"`)} {
		w := httptest.NewRecorder()
		WriteError(w, 429, id, CodeRateLimited, "slow down", map[string]int{"retryAfter": 3})
		if w.Code != 429 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d headers %v", w.Code, w.Header())
		}
		var env struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   RPCError        `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			t.Fatal(err)
		}
		want := string(id)
		if want == "" {
			want = "null"
		}
		if env.JSONRPC != "2.0" || string(env.ID) != want || env.Error.Code != CodeRateLimited || env.Error.Message != "slow down" {
			t.Fatalf("body %s", w.Body.Bytes())
		}
		if w.Header().Get("Content-Length") != itoa(w.Body.Len()) {
			t.Fatalf("Content-Length %q for %d bytes", w.Header().Get("Content-Length"), w.Body.Len())
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
