package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLegacyClientThroughGateway: a 2024-11-05 client opens the SSE stream,
// gets an endpoint pointing at the gateway, posts initialize and tools/list
// there, and reads the (filtered) answers on the stream; another subject
// cannot post into that session.
func TestLegacyClientThroughGateway(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("legacy GET: %v %v", err, resp)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	next := func() (event, data string) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				return event, data
			}
		}
	}
	ev, endpoint := next()
	if ev != "endpoint" || !strings.HasPrefix(endpoint, "/mcp/message?sessionId=") {
		t.Fatalf("endpoint event %q %q", ev, endpoint)
	}
	if r := tg.do(t, "POST", endpoint, initBody, bearer(tok)); r.status != 202 {
		t.Fatalf("initialize POST: %d %s", r.status, r.body)
	}
	if _, data := next(); !strings.Contains(data, `"protocolVersion"`) {
		t.Fatalf("initialize result %s", data)
	}
	if r := tg.do(t, "POST", endpoint, listBody, bearer(tok)); r.status != 202 {
		t.Fatalf("tools/list POST: %d", r.status)
	}
	_, data := next()
	if !strings.Contains(data, `"echo"`) || strings.Contains(data, "admin_delete") {
		t.Fatalf("tools/list on the legacy stream is not filtered: %s", data)
	}
	if r := tg.do(t, "POST", endpoint, listBody, bearer(tg.token(t, "bob", "mcp:read"))); r.status != 404 {
		t.Fatalf("bob posting into alice's legacy session: %d", r.status)
	}
	if r := tg.do(t, "POST", "/mcp/message?sessionId=nope", listBody, bearer(tok)); r.status != 404 {
		t.Fatalf("unknown legacy session: %d", r.status)
	}
}
