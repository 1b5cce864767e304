package legacysse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/origin"
)

// sseServer is a 2024-11-05 server: GET /sse names endpoint and then
// echoes every message POSTed there as a message event (after a non-JSON
// event and an event of another type, which must not be passed on).
func sseServer(t *testing.T, endpoint string) (*httptest.Server, *[]http.Header) {
	msgs := make(chan string, 16)
	var hdrs []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdrs = append(hdrs, r.Header.Clone())
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: endpoint\ndata: %s\n\n", endpoint)
			w.(http.Flusher).Flush()
			for {
				select {
				case m := <-msgs:
					fmt.Fprintf(w, "event: message\ndata: not json\n\nevent: other\ndata: {\"x\":1}\n\nevent: message\ndata: %s\n\n", m)
					w.(http.Flusher).Flush()
				case <-r.Context().Done():
					return
				}
			}
		case r.Method == http.MethodPost && r.URL.Path == "/msg":
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), "refuse") {
				http.Error(w, "refused", http.StatusBadRequest)
				return
			}
			msgs <- string(b)
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hdrs
}

func TestRoundTrip(t *testing.T) {
	srv, hdrs := sseServer(t, "/msg?session=1")
	got := make(chan []byte, 4)
	c, err := Dial(context.Background(), Options{URL: srv.URL + "/sse", HTTP: srv.Client(),
		Header: http.Header{"X-Api-Key": {"k"}}, OnMessage: func(m []byte) { got <- m }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Endpoint() != srv.URL+"/msg?session=1" {
		t.Fatalf("endpoint %q", c.Endpoint())
	}
	msg := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if err := c.Send(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; string(m) != msg {
		t.Fatalf("got %s, want the echo of %s (non-JSON and non-message events are dropped)", m, msg)
	}
	var se *StatusError
	if err := c.Send(context.Background(), []byte(`{"refuse":1}`)); !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Error(), "refused") {
		t.Fatalf("refused POST: %v", err)
	}
	for i, h := range *hdrs {
		if h.Get("X-Api-Key") != "k" {
			t.Errorf("request %d lacks the configured header", i)
		}
	}
	c.Close()
	<-c.Done()
	if c.Err() == nil {
		t.Fatal("a closed stream has no error")
	}
	select {
	case m := <-got:
		t.Fatalf("unexpected message %s", m)
	default:
	}
}

// TestEndpointOrigin: the endpoint event may not move the POSTs (and their
// credentials) to another origin.
func TestEndpointOrigin(t *testing.T) {
	for name, ep := range map[string]string{
		"other host":   "http://evil.example/msg",
		"other port":   "http://127.0.0.1:1/msg",
		"userinfo":     "http://user:pw@%s/msg",
		"other scheme": "https://%s/msg",
	} {
		t.Run(name, func(t *testing.T) {
			// the fake server substitutes nothing: build the URL after start
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				e := ep
				if strings.Contains(e, "%s") {
					e = fmt.Sprintf(e, srv.Listener.Addr())
				}
				fmt.Fprintf(w, "event: endpoint\ndata: %s\n\n", e)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))
			defer srv.Close()
			_, err := Dial(context.Background(), Options{URL: srv.URL, OnMessage: func([]byte) {}})
			if !errors.Is(err, origin.ErrOther) {
				t.Fatalf("err = %v, want origin.ErrOther", err)
			}
		})
	}
}

func TestDialFailures(t *testing.T) {
	cases := map[string]struct {
		h    http.HandlerFunc
		opts Options
		want string
	}{
		"status": {h: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", 410) }, want: "HTTP 410: gone"},
		"closed before endpoint": {h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\ndata: {}\n\n")
		}, want: "before naming its endpoint"},
		"no endpoint in time": {h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, opts: Options{EndpointTimeout: 20 * time.Millisecond}, want: "named no endpoint"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			o := tc.opts
			o.URL, o.OnMessage = srv.URL, func([]byte) {}
			_, err := Dial(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Dial(context.Background(), Options{URL: "http://127.0.0.1:1/"}); err == nil {
		t.Fatal("Dial without OnMessage succeeded")
	}
	if _, err := Dial(context.Background(), Options{URL: "/relative", OnMessage: func([]byte) {}}); err == nil {
		t.Fatal("Dial of a relative URL succeeded")
	}
}

// TestDialCancelled: the caller's context ends the dial.
func TestDialCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	if _, err := Dial(ctx, Options{URL: srv.URL, OnMessage: func([]byte) {}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestStreamHeadersBounded: without a whole-exchange timeout on the
// stream, the wait for its response headers is still bounded by the
// client's Timeout.
func TestStreamHeadersBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), Options{URL: srv.URL + "/sse", HTTP: &http.Client{Timeout: 100 * time.Millisecond}, OnMessage: func([]byte) {}})
	if err == nil || !strings.Contains(err.Error(), "no response headers within 100ms") {
		t.Fatalf("Dial to a server that never answers: %v", err)
	}
}
