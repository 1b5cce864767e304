package upstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// TestLimitEvictsOwnIdleConnection: a subject at its share gets a new
// connection by closing its own least recently used idle connection (one
// whose holder declared it idle, Activity); busy connections and other
// subjects' connections are never closed; with all of its connections
// busy the subject is refused. Measured in live connections.
func TestLimitEvictsOwnIdleConnection(t *testing.T) {
	var live atomic.Int64
	d := Limit(func(ctx context.Context, caller Caller) (Conn, error) {
		live.Add(1)
		return &closeOnce{live: &live}, nil
	}, NewSlots(6, 2))
	dial := func(sub string) (Conn, error) { return d(context.Background(), Caller{Owner: sub}) }
	bob, _ := dial("bob")
	bob.(Activity).Idle()
	a1, _ := dial("alice")
	a2, _ := dial("alice")
	a1.(Activity).Idle()
	a2.(Activity).Idle()
	hold := a2.(Activity).Busy() // a2 in use
	a3, err := dial("alice")
	if err != nil {
		t.Fatalf("alice at her share with an idle connection: %v", err)
	}
	if !unwrap(a1).closed.Load() || unwrap(a2).closed.Load() || unwrap(bob).closed.Load() {
		t.Fatalf("closed: a1 %v a2 %v bob %v; want only the idle a1", unwrap(a1).closed.Load(), unwrap(a2).closed.Load(), unwrap(bob).closed.Load())
	}
	if live.Load() != 3 {
		t.Fatalf("%d live, want 3", live.Load())
	}
	// a3 is busy from Dial until its holder says it is idle; a2 is held.
	var le *LimitError
	if _, err := dial("alice"); !errors.As(err, &le) || !le.PerSubject {
		t.Fatalf("alice with every connection busy: %v", err)
	}
	hold()
	if _, err := dial("alice"); err != nil {
		t.Fatalf("after a2 went idle: %v", err)
	}
	if !unwrap(a2).closed.Load() || unwrap(a3).closed.Load() || unwrap(bob).closed.Load() {
		t.Fatal("wrong connection closed")
	}
}

type closeOnce struct {
	live   *atomic.Int64
	closed atomic.Bool
}

func (c *closeOnce) Send(context.Context, []byte) error   { return nil }
func (c *closeOnce) Recv(context.Context) ([]byte, error) { return nil, errors.New("none") }
func (c *closeOnce) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.live.Add(-1)
	}
	return nil
}

func unwrap(c Conn) *closeOnce { return c.(*slotConn).Conn.(*closeOnce) }
