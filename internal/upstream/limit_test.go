package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

type fakeConn struct{ live *atomic.Int64 }

func (c fakeConn) Send(context.Context, []byte) error   { return nil }
func (c fakeConn) Recv(context.Context) ([]byte, error) { return nil, errors.New("none") }
func (c fakeConn) Close() error                         { c.live.Add(-1); return nil }

// TestLimitCountsEveryConnection: the budget holds in total and per
// subject, a Close (even repeated) returns exactly one slot, and a refused
// or failed Dial holds none. The measure is live connections.
func TestLimitCountsEveryConnection(t *testing.T) {
	var live, dials atomic.Int64
	fail := false
	d := Limit(func(ctx context.Context, caller Caller) (Conn, error) {
		dials.Add(1)
		if fail {
			return nil, errors.New("spawn failed")
		}
		live.Add(1)
		return fakeConn{&live}, nil
	}, NewSlots(4, 2))
	dial := func(sub string) (Conn, error) { return d(context.Background(), Caller{Owner: sub}) }
	var conns []Conn
	for i := 0; i < 5; i++ {
		c, err := dial("alice")
		var le *LimitError
		if i < 2 {
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, c)
		} else if !errors.As(err, &le) || !le.PerSubject {
			t.Fatalf("dial %d beyond the share: %v", i, err)
		}
	}
	for _, s := range []string{"bob", "bob"} {
		c, err := dial(s)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	_, err := dial("carol")
	var le *LimitError
	if !errors.As(err, &le) || le.PerSubject {
		t.Fatalf("dial beyond the total: %v", err)
	}
	if live.Load() != 4 || dials.Load() != 4 {
		t.Fatalf("live %d dials %d, want 4 and 4: refused dials must not reach the dialer", live.Load(), dials.Load())
	}
	conns[0].Close()
	conns[0].Close()
	if c, err := dial("carol"); err != nil {
		t.Fatal(err)
	} else {
		conns[0] = c
	}
	if _, err := dial("dave"); err == nil {
		t.Fatal("a second Close returned a second slot")
	}
	fail = true
	conns[1].Close()
	if _, err := dial("erin"); err == nil || errors.As(err, &le) {
		t.Fatalf("failing dial: %v", err)
	}
	fail = false
	if _, err := dial("erin"); err != nil {
		t.Fatalf("a failed dial kept its slot: %v", err)
	}
}

func TestRefuseDial(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
	}{{&LimitError{PerSubject: true, Limit: 2}, 429}, {&LimitError{Limit: 4}, 503}} {
		w := httptest.NewRecorder()
		if !RefuseDial(w, []byte("7"), c.err) {
			t.Fatal("not refused")
		}
		if w.Code != c.status || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"id":7`) || !strings.Contains(w.Body.String(), fmt.Sprintf(`"code":%d,`, -100*c.status)) {
			t.Fatalf("%v: %d %v %s", c.err, w.Code, w.Header(), w.Body)
		}
	}
	if RefuseDial(httptest.NewRecorder(), nil, errors.New("other")) || RefuseDial(httptest.NewRecorder(), nil, nil) {
		t.Fatal("other errors are not budget refusals")
	}
	_ = http.StatusOK
}
