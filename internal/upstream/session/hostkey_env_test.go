package session

import (
	"net/http"
	"testing"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestHostKeyCoversChildEnv: two callers whose stdio children would get
// different per-caller environments (another user's token, or a refreshed
// one) never share a task host.
func TestHostKeyCoversChildEnv(t *testing.T) {
	base := upstream.Caller{Owner: "iss\x00alice", Client: "c", Header: http.Header{}}
	a, b, none := base, base, base
	a.Env = []string{"TOKEN=one"}
	b.Env = []string{"TOKEN=two"}
	if hostKey(a) == hostKey(b) || hostKey(a) == hostKey(none) {
		t.Fatal("callers with different child environments share a host key")
	}
	c := base
	c.Env = []string{"TOKEN=one"}
	if hostKey(a) != hostKey(c) {
		t.Fatal("the same caller gets different host keys")
	}
}
