package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

func proxyTo(t *testing.T, h http.Handler, o Options) (*httptest.Server, *httptest.Server) {
	return proxyFiltered(t, h, o, upstream.NoFilter)
}

// proxyFiltered is proxyTo with the response filter of every request.
func proxyFiltered(t *testing.T, h http.Handler, o Options, filter upstream.ResponseFilter) (*httptest.Server, *httptest.Server) {
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	o.URL = up.URL
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(asGateway(p, filter))
	t.Cleanup(front.Close)
	return up, front
}

// asGateway serves h as the gateway does: the body read, and the request
// id and the filter handed over in the Request.
func asGateway(h upstream.Handler, filter upstream.ResponseFilter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := upstream.NewRequest(upstream.Caller{}, filter)
		r.Body, r.ContentLength = http.NoBody, 0
		if len(body) > 0 {
			if e, err := mcp.PeekOne(body); err == nil {
				req.ID = e.ID
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		h.ServeMCP(w, r, req)
	})
}

func TestSSEIsStreamedEventByEvent(t *testing.T) {
	next := make(chan struct{})
	_, front := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: e%d\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n%d\"}\n\n", i, i)
			w.(http.Flusher).Flush()
			select { // the next event is written only after the client saw this one
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}), Options{})
	resp, err := http.Post(front.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatal("X-Accel-Buffering not set")
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v (buffered?)", i, err)
			}
			if strings.HasPrefix(line, "data:") {
				if !strings.Contains(line, fmt.Sprintf("n%d", i)) {
					t.Fatalf("event %d: %q", i, line)
				}
				break
			}
		}
		next <- struct{}{}
	}
}

func TestFilterAndCredentialsAndHeaders(t *testing.T) {
	var seen http.Header
	filter := upstream.Filtered(func(m []byte) []byte {
		return []byte(strings.ReplaceAll(string(m), `{"name":"secret"}`, ""))
	})
	_, front := proxyFiltered(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "up=1")
		w.Header().Set("Mcp-Session-Id", "s1")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}]}}`)
	}), Options{Header: http.Header{"X-Gateway-Credential": {"gw"}}}, filter)
	req, _ := http.NewRequest("POST", front.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range map[string]string{"Authorization": "Bearer client-token", "DPoP": "proof", "Cookie": "c=1", "Mcp-Param-Region": "eu", "Last-Event-ID": "7", "Connection": "X-Hop", "X-Hop": "1"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "secret") || resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Mcp-Session-Id") != "s1" {
		t.Fatalf("reply %s %v", b, resp.Header)
	}
	for _, h := range []string{"Authorization", "Dpop", "Cookie", "X-Hop"} {
		if seen.Get(h) != "" {
			t.Errorf("%s reached the upstream", h)
		}
	}
	if seen.Get("Mcp-Param-Region") != "eu" || seen.Get("Last-Event-Id") != "7" || seen.Get("X-Gateway-Credential") != "gw" {
		t.Fatalf("forwarded headers %v", seen)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	cancelled := make(chan struct{})
	_, front := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(cancelled)
	}), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not cancelled after the client left")
	}
}

func TestUpstreamFailuresGiveJSONRPCErrors(t *testing.T) {
	p, err := New(Options{URL: "http://127.0.0.1:1/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	asGateway(p, upstream.NoFilter).ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader(`{"jsonrpc":"2.0","id":42,"method":"x"}`)))
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), `"id":42`) || !strings.Contains(rec.Body.String(), `"code":-50200,`) {
		t.Fatalf("down: %d %s", rec.Code, rec.Body)
	}
	_, front := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
	}), Options{ResponseTimeout: 100 * time.Millisecond})
	resp, err := http.Post(front.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":"a","method":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 504 || !strings.Contains(string(b), `"id":"a"`) {
		t.Fatalf("slow: %d %s", resp.StatusCode, b)
	}
	_, front = proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		fmt.Fprint(w, "<html>boom</html>")
	}), Options{})
	resp, _ = http.Post(front.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"x"}`))
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || !strings.Contains(string(b), `"id":3`) {
		t.Fatalf("500 html: %d %s", resp.StatusCode, b)
	}
}
