package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
//
// With a Shared side (Redis mode, SetShared) a subject's share is counted
// over every replica: a new slot also takes a lease there, and a subject
// whose share is held across the deployment is refused (after this
// replica ended one of its own idle slots, if it had one). The total stays
// this replica's own: it protects this replica's children, connections
// and memory.
type Slots struct {
	max, perSubject int
	evictAny        bool
	now             func() time.Time
	shared          Shared // nil: this replica's count only

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
	lease   string // its lease in the Shared side ("" before it is granted)
	leased  bool   // the Shared side granted lease
}

// Shared is the deployment-wide side of a Slots budget: a subject's share
// over every replica (gateway/budgets.go, on state.Leases). Its calls may
// block for a bounded round trip and are never made under a Slots lock.
type Shared interface {
	// Acquire grants lease to subject unless subject holds share leases
	// over the deployment (a *LimitError with PerSubject and Global) or the
	// shared state cannot answer (a *LimitError with Unavailable). A lease
	// subject holds already is granted again.
	Acquire(subject, lease string, share int) error
	// Rename moves subject's granted lease from to to.
	Rename(subject, from, to string)
	// Release gives subject's lease back.
	Release(subject, lease string)
}

// SetShared counts the per-subject share over every replica through sh.
func (s *Slots) SetShared(sh Shared) *Slots { s.shared = sh; return s }

// Leases returns the leases of the live slots, by subject (the holder
// renews them on its heartbeat).
func (s *Slots) Leases() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for subject, set := range s.bySubject {
		for sl := range set {
			if sl.leased {
				out[subject] = append(out[subject], sl.lease)
			}
		}
	}
	return out
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
	// Global: the share is held over all the gateway's replicas.
	Global bool
	// Unavailable: the shared state could not count the share (503).
	Unavailable bool
}

func (e *LimitError) Error() string {
	switch {
	case e.Unavailable:
		return "shared state (Redis) unavailable: this subject's session budget could not be checked; retry after 5s"
	case e.Global:
		return "this subject already holds " + strconv.Itoa(e.Limit) + " sessions on this upstream across the gateway's replicas (limits.max_sessions_per_subject): end one (DELETE) or retry when one ends or expires"
	}
	if e.PerSubject {
		return "this subject already has " + strconv.Itoa(e.Limit) + " upstream sessions with a request in flight or an open stream (limits.max_sessions_per_subject): retry when one of them ends, or end one (DELETE, or close a stream)"
	}
	return "this upstream already has " + strconv.Itoa(e.Limit) + " sessions in use (max_sessions): retry later"
}

// RetryAfter is the Retry-After value, in seconds, sent with the refusal:
// a busy share frees up when a request ends, a full total takes longer.
func (e *LimitError) RetryAfter() string {
	if e.PerSubject || e.Unavailable {
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
	return s.AcquireAs(subject, "")
}

// AcquireAs is Acquire with the slot's lease named lease in the Shared
// side ("": a fresh random one): a session another replica created and
// leased already is granted without counting twice.
func (s *Slots) AcquireAs(subject, lease string) (sl *Slot, done func(), err error) {
	sl, done, err = s.acquireLocal(subject)
	if err != nil || s.shared == nil {
		return sl, done, err
	}
	if lease == "" {
		lease = newLease()
	}
	if err := s.admit(sl, lease); err != nil {
		sl.Release()
		return nil, nil, err
	}
	return sl, done, nil
}

// admit takes sl's lease in the Shared side. When the subject's share is
// held over the deployment, this replica ends its own least recently used
// idle slot of the subject, if it has one, and tries once more.
func (s *Slots) admit(sl *Slot, lease string) error {
	err := s.shared.Acquire(sl.subject, lease, s.perSubject)
	var le *LimitError
	if errors.As(err, &le) && le.Global {
		s.mu.Lock()
		victim := lruIdle(s.bySubject[sl.subject])
		if victim != nil {
			s.dropLocked(victim)
		}
		s.mu.Unlock()
		if victim == nil {
			return err
		}
		s.ended(victim)
		err = s.shared.Acquire(sl.subject, lease, s.perSubject)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	sl.lease, sl.leased = lease, true
	s.mu.Unlock()
	return nil
}

// ended runs a slot's evict function and gives its lease back, once it
// has been dropped (outside the lock).
func (s *Slots) ended(victim *Slot) {
	victim.evict()
	s.unlease(victim)
}

// unlease gives a dropped slot's lease back to the Shared side.
func (s *Slots) unlease(sl *Slot) {
	s.mu.Lock()
	lease, leased := sl.lease, sl.leased
	sl.leased = false
	s.mu.Unlock()
	if leased {
		s.shared.Release(sl.subject, lease)
	}
}

// newLease is a random lease id.
func newLease() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// acquireLocal is Acquire on this replica's count.
func (s *Slots) acquireLocal(subject string) (sl *Slot, done func(), err error) {
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
		s.ended(victim)
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
	if sl.s.shared != nil {
		sl.s.unlease(sl)
	}
}

// Expire gives sl back here but leaves its lease in the Shared side to
// expire unless another replica renews it: a session binding that idled
// out on this replica may be in use through another one (it shares the
// session's lease), so only the end of the session itself releases it.
func (sl *Slot) Expire() {
	sl.s.mu.Lock()
	sl.s.dropLocked(sl)
	sl.leased = false
	sl.s.mu.Unlock()
}

// SetLease renames sl's lease in the Shared side to id (a reserved
// session place becomes the session's own lease once the upstream named
// it, so that replicas adopting the session share the one lease).
func (sl *Slot) SetLease(id string) {
	s := sl.s
	if s.shared == nil {
		return
	}
	s.mu.Lock()
	old, leased := sl.lease, sl.leased && !sl.gone
	if leased {
		sl.lease = id
	}
	s.mu.Unlock()
	if leased && old != id {
		s.shared.Rename(sl.subject, old, id)
	}
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
