package session

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// capsConn is an upstream that answers initialize with caps.
type capsConn struct {
	caps string
	out  chan []byte
	done chan struct{}
}

func (c *capsConn) Send(_ context.Context, msg []byte) error {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(msg, &m)
	if m.Method == "initialize" {
		c.out <- []byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"protocolVersion":"2025-11-25","capabilities":` + c.caps + `,"serverInfo":{"name":"caps","version":"1"}}}`)
	}
	return nil
}

func (c *capsConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.out:
		return m, nil
	case <-c.done:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *capsConn) Close() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return nil
}

// TestStatelessDiscoverNoTasks: the server/discover built for a stdio or
// SSE upstream keeps the Tasks extension the upstream declares (tasks are
// served on task hosts, taskhost.go): "A gateway that passes a server's
// capabilities through must not claim an extension the upstream lacks, nor
// hide one the gateway supports on the upstream's behalf" (issue 12 item
// 6); the 2025-11-25 tasks capability is dropped: "Servers that
// previously advertised these [tasks.requests.*, tasks.cancel, tasks.list]
// MUST migrate to declaring io.modelcontextprotocol/tasks, and MUST NOT
// continue to advertise the legacy capabilities under any protocol version
// that includes this extension" (ext-tasks seps/2663-tasks-extension.md
// §Backward Compatibility). Other capabilities and extensions pass.
func TestStatelessDiscoverNoTasks(t *testing.T) {
	caps := `{"tools":{},"tasks":{"list":{},"cancel":{},"requests":{"tools":{"call":{}}}},"extensions":{"io.modelcontextprotocol/tasks":{},"io.modelcontextprotocol/ui":{"v":1}}}`
	s := New(Options{Dial: func(context.Context, upstream.Caller) (upstream.Conn, error) {
		return &capsConn{caps: caps, out: make(chan []byte, 4), done: make(chan struct{})}, nil
	}, RequestTimeout: 5 * time.Second, KeepAlive: time.Second})
	h := httptest.NewServer(standalone(s))
	defer h.Close()
	f := &fixture{srv: s, http: h}
	d := f.post(t, "", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, jsonOnly)
	var m struct {
		Result struct {
			Capabilities map[string]json.RawMessage `json:"capabilities"`
			TTLMs        *int                       `json:"ttlMs"`
			CacheScope   string                     `json:"cacheScope"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(d.body), &m); err != nil || m.Result.Capabilities == nil {
		t.Fatalf("discover: %s", d.body)
	}
	if _, ok := m.Result.Capabilities["tasks"]; ok {
		t.Fatalf("discover advertises the 2025-11-25 tasks capability: %s", d.body)
	}
	if !strings.Contains(string(m.Result.Capabilities["extensions"]), `"io.modelcontextprotocol/tasks":{}`) {
		t.Fatalf("discover hides the Tasks extension the upstream declares and the gateway carries: %s", d.body)
	}
	if _, ok := m.Result.Capabilities["tools"]; !ok || !strings.Contains(string(m.Result.Capabilities["extensions"]), `"io.modelcontextprotocol/ui":{"v":1}`) {
		t.Fatalf("other capabilities lost: %s", d.body)
	}
	// "Servers MUST include caching hints on results with resultType:
	// \"complete\" returned by ... server/discover" (2026-07-28
	// server/utilities/caching §Cacheable Results).
	if m.Result.TTLMs == nil || *m.Result.TTLMs != 0 || m.Result.CacheScope != "private" {
		t.Fatalf("discover without caching hints: %s", d.body)
	}
}
