package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Slots is the budget of live upstream connections of one upstream: at
// most Max at once, and at most PerSubject of them for one subject. Every
// connection a limited Dialer opens holds one slot from Dial until Close,
// whatever opened it (a session, a 2026-07-28 request, a parked
// multi-round-trip request, a 2024-11-05 stream), so no path can start a
// child process outside the budget.
type Slots struct {
	max, perSubject int

	mu        sync.Mutex // guards total, bySubject
	total     int
	bySubject map[string]int
}

// NewSlots returns a budget of total connections, perSubject of them per
// subject. perSubject is clamped to [1, max].
func NewSlots(total, perSubject int) *Slots {
	total = max(total, 1)
	perSubject = min(max(perSubject, 1), total)
	return &Slots{max: total, perSubject: perSubject, bySubject: map[string]int{}}
}

// LimitError is the refusal of a Dial beyond a budget. PerSubject tells
// whether the caller's own share (429) or the upstream's total (503) is
// used up.
type LimitError struct {
	PerSubject bool
	Limit      int
}

func (e *LimitError) Error() string {
	if e.PerSubject {
		return "this subject already holds " + strconv.Itoa(e.Limit) + " upstream sessions (limits.max_sessions_per_subject): end one (DELETE, or close a stream) or wait until an idle one is closed"
	}
	return "this upstream already has " + strconv.Itoa(e.Limit) + " live sessions (max_sessions): retry later"
}

// RetryAfter is the Retry-After value, in seconds, sent with the refusal.
func (e *LimitError) RetryAfter() string { return "30" }

// Len returns the number of slots in use.
func (s *Slots) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// acquire takes a slot for subject, or explains why none is left.
func (s *Slots) acquire(subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySubject[subject] >= s.perSubject {
		return &LimitError{PerSubject: true, Limit: s.perSubject}
	}
	if s.total >= s.max {
		return &LimitError{Limit: s.max}
	}
	s.total++
	s.bySubject[subject]++
	return nil
}

func (s *Slots) release(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.bySubject[subject]--; s.bySubject[subject] <= 0 {
		delete(s.bySubject, subject)
	}
}

// Limit returns a Dialer that opens connections of d only within s: a
// connection holds its slot until it is closed. A Dial beyond the budget
// fails with a *LimitError and never reaches d.
func Limit(d Dialer, s *Slots) Dialer {
	return func(ctx context.Context, info SessionInfo) (Conn, error) {
		if err := s.acquire(info.Subject); err != nil {
			return nil, err
		}
		c, err := d(ctx, info)
		if err != nil {
			s.release(info.Subject)
			return nil, err
		}
		return &slotConn{Conn: c, release: func() { s.release(info.Subject) }}, nil
	}
}

// slotConn returns its slot once, when it is closed.
type slotConn struct {
	Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the limited connection (for tests that inspect it).
func (c *slotConn) Unwrap() Conn { return c.Conn }

// RefuseDial answers a request whose Dial a budget refused: 429 when the
// subject's share is used up, 503 when the upstream's total is, both with
// Retry-After and a JSON-RPC error carrying id. It writes nothing and
// reports false when err is not a budget refusal.
func RefuseDial(w http.ResponseWriter, id json.RawMessage, err error) bool {
	var le *LimitError
	if !errors.As(err, &le) {
		return false
	}
	status := http.StatusServiceUnavailable
	if le.PerSubject {
		status = http.StatusTooManyRequests
	}
	h := w.Header()
	h.Set("Retry-After", le.RetryAfter())
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mcp.ErrorResponse(id, mcp.AppCode(status), le.Error(), nil))
	return true
}
