package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Slots is a budget of upstream sessions: at most Max at once, and at most
// PerSubject of them for one subject. It is the one mechanism behind every
// session budget of the gateway: the live upstream connections of a limited
// Dialer (stdio children, legacy SSE connections, in every era) and the
// gateway's session binding table.
//
// A slot is busy while something uses it (a request in flight, an open
// stream, or a holder that never declared it idle) and idle otherwise.
// When a subject is at its share, Acquire evicts that same subject's least
// recently used idle slot that can be evicted and admits the new one: a
// client that crashed or restarted without DELETE does not lock its
// subject out until the idle timeout. Only when all of the subject's slots
// are busy is the new one refused. A subject's share is never taken from
// another subject. When the total is full, Acquire evicts the least
// recently used idle slot of any subject that its holder declared
// Reclaimable (a task host whose tasks nobody polls), or, for a budget
// made with EvictAnyIdle, of any subject at all (used where a slot costs
// memory only); with none, it refuses (503).
type Slots struct {
	max, perSubject int
	evictAny        bool
	now             func() time.Time

	mu        sync.Mutex // guards total, bySubject and every Slot's fields
	total     int
	bySubject map[string]map[*Slot]struct{}
}

// Slot is one place in a Slots budget, from Acquire until Release.
type Slot struct {
	s       *Slots
	subject string
	busy    int
	last    time.Time
	evict   func() // nil: never evicted
	reclaim bool   // idle, any subject may evict it when the total is full
	gone    bool   // released or evicted
}

// NewSlots returns a budget of total slots, perSubject of them per
// subject. perSubject is clamped to [1, max].
func NewSlots(total, perSubject int) *Slots {
	total = max(total, 1)
	perSubject = min(max(perSubject, 1), total)
	return &Slots{max: total, perSubject: perSubject, now: time.Now, bySubject: map[string]map[*Slot]struct{}{}}
}

// EvictAnyIdle makes a full budget evict the least recently used idle slot
// of any subject instead of refusing (busy slots are never evicted).
func (s *Slots) EvictAnyIdle() *Slots { s.evictAny = true; return s }

// SetClock replaces the clock (tests).
func (s *Slots) SetClock(now func() time.Time) { s.now = now }

// PerSubject returns a subject's share.
func (s *Slots) PerSubject() int { return s.perSubject }

// Max returns the total.
func (s *Slots) Max() int { return s.max }

// LimitError is the refusal of a Dial beyond a budget. PerSubject tells
// whether the caller's own share (429) or the upstream's total (503) is
// used up.
type LimitError struct {
	PerSubject bool
	Limit      int
}

func (e *LimitError) Error() string {
	if e.PerSubject {
		return "this subject already has " + strconv.Itoa(e.Limit) + " upstream sessions with a request in flight or an open stream (limits.max_sessions_per_subject): retry when one of them ends, or end one (DELETE, or close a stream)"
	}
	return "this upstream already has " + strconv.Itoa(e.Limit) + " sessions in use (max_sessions): retry later"
}

// RetryAfter is the Retry-After value, in seconds, sent with the refusal:
// a busy share frees up when a request ends, a full total takes longer.
func (e *LimitError) RetryAfter() string {
	if e.PerSubject {
		return "5"
	}
	return "30"
}

// Len returns the number of slots in use.
func (s *Slots) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// SubjectLen returns the number of slots subject holds.
func (s *Slots) SubjectLen(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bySubject[subject])
}

// Acquire takes a busy slot for subject (done ends that first use), or
// explains why none is left. A slot it evicts to make room has its evict
// function run before Acquire returns.
func (s *Slots) Acquire(subject string) (sl *Slot, done func(), err error) {
	s.mu.Lock()
	var victim *Slot
	mine := s.bySubject[subject]
	switch {
	case len(mine) >= s.perSubject:
		if victim = lruIdle(mine); victim == nil {
			s.mu.Unlock()
			return nil, nil, &LimitError{PerSubject: true, Limit: s.perSubject}
		}
	case s.total >= s.max:
		for _, set := range s.bySubject {
			for sl := range set {
				if sl.busy == 0 && sl.evict != nil && (s.evictAny || sl.reclaim) && (victim == nil || sl.last.Before(victim.last)) {
					victim = sl
				}
			}
		}
		if victim == nil {
			s.mu.Unlock()
			return nil, nil, &LimitError{Limit: s.max}
		}
	}
	if victim != nil {
		s.dropLocked(victim)
	}
	if mine = s.bySubject[subject]; mine == nil {
		mine = map[*Slot]struct{}{}
		s.bySubject[subject] = mine
	}
	sl = &Slot{s: s, subject: subject, busy: 1, last: s.now()}
	mine[sl] = struct{}{}
	s.total++
	s.mu.Unlock()
	if victim != nil {
		victim.evict()
	}
	return sl, sl.doneFunc(), nil
}

// lruIdle is the least recently used idle, evictable slot of set.
func lruIdle(set map[*Slot]struct{}) *Slot {
	var v *Slot
	for sl := range set {
		if sl.busy == 0 && sl.evict != nil && (v == nil || sl.last.Before(v.last)) {
			v = sl
		}
	}
	return v
}

func (s *Slots) dropLocked(sl *Slot) {
	if sl.gone {
		return
	}
	sl.gone = true
	s.total--
	set := s.bySubject[sl.subject]
	delete(set, sl)
	if len(set) == 0 {
		delete(s.bySubject, sl.subject)
	}
}

// Busy marks sl in use until done runs; ok is false (and done nil) when sl
// was released or evicted already.
func (sl *Slot) Busy() (done func(), ok bool) {
	sl.s.mu.Lock()
	defer sl.s.mu.Unlock()
	if sl.gone {
		return nil, false
	}
	sl.busy++
	sl.last = sl.s.now()
	return sl.doneFunc(), true
}

func (sl *Slot) doneFunc() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			sl.s.mu.Lock()
			sl.busy--
			sl.last = sl.s.now()
			sl.s.mu.Unlock()
		})
	}
}

// Evictable lets Acquire end sl with evict when it is idle and its subject
// (or, with EvictAnyIdle, the whole budget) needs the room. evict runs
// once, outside the budget's lock, after the slot has been given away.
func (sl *Slot) Evictable(evict func()) {
	sl.s.mu.Lock()
	sl.evict = evict
	sl.s.mu.Unlock()
}

// Reclaimable lets Acquire evict sl, when it is idle, for any subject
// once the total is full (not only for its own subject at its share).
func (sl *Slot) Reclaimable() {
	sl.s.mu.Lock()
	sl.reclaim = true
	sl.s.mu.Unlock()
}

// IdleFor reports how long sl has been idle (0 while busy).
func (sl *Slot) IdleFor() time.Duration {
	sl.s.mu.Lock()
	defer sl.s.mu.Unlock()
	if sl.busy > 0 {
		return 0
	}
	return sl.s.now().Sub(sl.last)
}

// InUse reports whether sl is busy.
func (sl *Slot) InUse() bool {
	sl.s.mu.Lock()
	defer sl.s.mu.Unlock()
	return sl.busy > 0
}

// Release gives sl back. Idempotent; a no-op after eviction.
func (sl *Slot) Release() {
	sl.s.mu.Lock()
	sl.s.dropLocked(sl)
	sl.s.mu.Unlock()
}

// Limit returns a Dialer that opens connections of d only within s: a
// connection holds its slot until it is closed. A Dial beyond the budget
// fails with a *LimitError and never reaches d.
//
// A connection is busy for its whole life (a stateless request, a legacy
// stream, a parked request) unless its holder calls Idle on it (see
// Activity): from then on it is busy only while Busy holds are
// outstanding, and an idle connection may be closed to make room for
// another connection of the same subject.
func Limit(d Dialer, s *Slots) Dialer {
	return func(ctx context.Context, caller Caller) (Conn, error) {
		sl, hold, err := s.Acquire(caller.Owner)
		if err != nil {
			return nil, err
		}
		c, err := d(ctx, caller)
		if err != nil {
			sl.Release()
			return nil, err
		}
		sc := &slotConn{Conn: c, slot: sl, hold: hold}
		sl.Evictable(func() { _ = sc.close() })
		return sc, nil
	}
}

// Activity is implemented by the connections of a limited Dialer. A
// holder that knows when its connection is in use (the session server)
// calls Idle once, then Busy around each use.
type Activity interface {
	Idle()
	Busy() (done func())
}

// slotConn returns its slot once, when it is closed.
type slotConn struct {
	Conn
	slot *Slot
	hold func() // the Dial's own busy hold, until Idle
	once sync.Once
}

func (c *slotConn) Close() error { return c.close() }

func (c *slotConn) close() error {
	err := c.Conn.Close()
	c.once.Do(c.slot.Release)
	return err
}

// Idle ends the Dial's own hold on the slot.
func (c *slotConn) Idle() { c.hold() }

// Busy holds the slot until done runs.
func (c *slotConn) Busy() (done func()) {
	if d, ok := c.slot.Busy(); ok {
		return d
	}
	return func() {}
}

// Reclaimable makes the connection's slot evictable, when idle, for any
// subject once the budget's total is full (Slot.Reclaimable).
func (c *slotConn) Reclaimable() { c.slot.Reclaimable() }

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
	w.Header().Set("Retry-After", le.RetryAfter())
	mcp.WriteError(w, status, id, mcp.AppCode(status), le.Error(), nil)
	return true
}
