package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// sessionBinder binds MCP session ids to the subject that created them, so
// that a session id is never a credential: another subject presenting it
// gets 404, exactly as if it did not exist (MCP security best practices,
// session hijacking: bind sessions to "<user_id>:<session_id>"). The
// binding is also the only source of the session id the gateway sends
// upstream (exchange.forward): a client-supplied id reaches the upstream
// only after lookup found it bound to that caller.
//
// The table is an upstream.Slots budget, the same mechanism as the
// connection budget: max bindings in all, a share per subject. A new
// session reserves its place before initialize goes upstream. A binding is
// busy while a request of its session is in flight or a stream of it is
// open. When a subject is at its share, its least recently used idle
// binding is evicted (its client gets 404, the spec's "session expired,
// initialize again") and the upstream session ended (end: DELETE upstream,
// or the child closed); only a subject whose every session is busy is
// refused (429). A full table refuses with 503, or, on a table whose
// bindings cost memory only (EvictAnyIdle), evicts the least recently used
// idle binding of any subject. Idle bindings expire after idle.
type sessionBinder struct {
	slots *upstream.Slots
	idle  time.Duration
	now   func() time.Time
	// end ends the upstream session of a binding the gateway dropped
	// (evicted, or expired when expired is set); nil: nothing to do. It
	// must not block long.
	end func(b *binding, expired bool)
	// gone runs when a session ended (DELETE, or the upstream said it is
	// gone): the shared directory forgets it too. nil in memory mode.
	gone func(id string)

	mu       sync.Mutex // guards sessions, swept
	sessions map[string]*binding
	swept    time.Time // last full sweep of idle bindings
}

type binding struct {
	id    string
	owner string
	slot  *upstream.Slot
	// who created the session (identity headers of the upstream DELETE);
	// nil when the upstream gets no identity headers.
	who *resource.Principal
	// shared is when this replica last wrote the binding's directory
	// entry (guarded by sessionBinder.mu; zero in memory mode).
	shared time.Time
}

// reservation is the place of a session being created; held (busy) until
// the initialize exchange ends.
type reservation struct {
	slot *upstream.Slot
	done func()
}

// bindRefusal explains why a session cannot be started.
type bindRefusal struct {
	perSubject bool
	limit      int
	retryAfter string
	// global: the share is held over the deployment's replicas;
	// unavailable: the shared state could not count it (503).
	global, unavailable bool
}

func (r *bindRefusal) status() int {
	if r.perSubject && !r.unavailable {
		return 429
	}
	return 503
}

func (r *bindRefusal) message() string {
	switch {
	case r.unavailable:
		return "shared state (Redis) unavailable: this subject's session budget could not be checked; retry after " + r.retryAfter + "s"
	case r.global:
		return "too many sessions for this subject on this upstream across the gateway's replicas (" + strconv.Itoa(r.limit) +
			", limits.max_http_sessions_per_subject or max_sessions_per_subject): end one (DELETE) or retry when one ends or expires"
	}
	if r.perSubject {
		return "too many sessions in use for this subject on this upstream (" + strconv.Itoa(r.limit) +
			", limits.max_sessions_per_subject): every one has a request in flight or an open stream; retry when one ends"
	}
	return "this upstream's session table is full (" + strconv.Itoa(r.limit) + " sessions in use): retry later"
}

func (r *bindRefusal) retryAfterSeconds() string { return r.retryAfter }

func newSessionBinder(slots *upstream.Slots, idle time.Duration) *sessionBinder {
	b := &sessionBinder{slots: slots, idle: idle, now: time.Now, sessions: map[string]*binding{}}
	slots.SetClock(func() time.Time { return b.now() })
	return b
}

// reserve takes a place for a session owner is about to create, evicting
// owner's least recently used idle binding when owner is at its share. It
// must be followed by commit or release. Idle bindings are dropped first.
func (b *sessionBinder) reserve(owner string) (*reservation, *bindRefusal) {
	return b.reserveAs(owner, "")
}

// reserveAs is reserve with the place's lease in the shared budget named
// lease ("": a fresh one; a session id: that session's own lease, which
// the replica that created the session holds already).
func (b *sessionBinder) reserveAs(owner, lease string) (*reservation, *bindRefusal) {
	b.sweep()
	sl, done, err := b.slots.AcquireAs(owner, lease)
	if le, ok := err.(*upstream.LimitError); ok {
		return nil, &bindRefusal{perSubject: le.PerSubject, limit: le.Limit, retryAfter: le.RetryAfter(), global: le.Global, unavailable: le.Unavailable}
	}
	return &reservation{slot: sl, done: done}, nil
}

// commit turns a reservation into the binding of id. It fails (and the
// reservation is released) when id is already bound to another subject:
// an upstream that hands one id to two subjects must not merge their
// sessions. The binding stays busy until res.done runs.
func (b *sessionBinder) commit(res *reservation, owner, id string, who *resource.Principal) bool {
	b.mu.Lock()
	if s, ok := b.sessions[id]; ok {
		b.mu.Unlock()
		res.slot.Release()
		return s.owner == owner
	}
	s := &binding{id: id, owner: owner, slot: res.slot, who: who, shared: b.now()}
	b.sessions[id] = s
	res.slot.Evictable(func() { b.evicted(s) })
	b.mu.Unlock()
	// The place's lease becomes the session's own: every replica that
	// adopts the session shares it (shared budgets; no-op in memory mode).
	res.slot.SetLease(id)
	return true
}

// release gives back an unused reservation.
func (b *sessionBinder) release(res *reservation) { res.slot.Release() }

// evicted runs when the budget gave s's place to a new session.
func (b *sessionBinder) evicted(s *binding) {
	b.mu.Lock()
	if b.sessions[s.id] == s {
		delete(b.sessions, s.id)
	}
	b.mu.Unlock()
	if b.end != nil {
		b.end(s, false)
	}
}

// lookup returns the bound session id when id exists and belongs to owner,
// and holds the binding busy until done runs. The returned id is the
// table's, never the caller's string: it is what the gateway sends
// upstream.
func (b *sessionBinder) lookup(id, owner string) (sid string, done func(), ok bool) {
	b.mu.Lock()
	s, ok := b.sessions[id]
	if !ok || s.owner != owner {
		b.mu.Unlock()
		return "", nil, false
	}
	if s.slot.IdleFor() > b.idle {
		delete(b.sessions, id)
		b.mu.Unlock()
		b.drop(s)
		return "", nil, false
	}
	b.mu.Unlock()
	if done, ok = s.slot.Busy(); !ok {
		return "", nil, false // evicted a moment ago
	}
	return s.id, done, true
}

// forget drops the binding of id: the session ended (DELETE, or the
// upstream said it is gone).
func (b *sessionBinder) forget(id string) {
	b.mu.Lock()
	s, ok := b.sessions[id]
	delete(b.sessions, id)
	b.mu.Unlock()
	if ok {
		s.slot.Release()
	}
	if id != "" && b.gone != nil {
		b.gone(id)
	}
}

// foreign reports whether id is bound here to another subject than owner.
func (b *sessionBinder) foreign(id, owner string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[id]
	return ok && s.owner != owner
}

// disown drops the local binding of id when it belongs to another subject
// than owner, whom the shared directory names ("" drops it whoever owns
// it): the directory decides who
// owns a session, and a local copy that disagrees is stale (the upstream
// session is not ended: it is owner's).
func (b *sessionBinder) disown(id, owner string) {
	b.mu.Lock()
	s, ok := b.sessions[id]
	if ok && s.owner != owner {
		delete(b.sessions, id)
	}
	b.mu.Unlock()
	if ok && s.owner != owner {
		s.slot.Release()
	}
}

// adopt binds id, which the shared directory holds for owner, in this
// replica's table (the session lives at the upstream; another replica
// created it), and holds it busy until done runs. A local binding of id
// for another subject disagrees with the directory and is dropped first:
// adopt never serves, nor keeps, an owner the directory does not name.
func (b *sessionBinder) adopt(owner, id string, who *resource.Principal) (done func(), ok bool, r *bindRefusal) {
	b.disown(id, owner)
	res, r := b.reserveAs(owner, id)
	if r != nil {
		return nil, false, r
	}
	committed := b.commit(res, owner, id, who)
	res.done()
	if !committed {
		return nil, false, nil
	}
	_, done, ok = b.lookup(id, owner)
	return done, ok, nil
}

// shareDue reports whether the directory entry of id is due for a
// refresh (state.Refresher: half its TTL passed since this replica wrote
// it), and marks it refreshed.
func (b *sessionBinder) shareDue(id string, every time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[id]
	if !ok || b.now().Sub(s.shared) < every {
		return false
	}
	s.shared = b.now()
	return true
}

// drop releases an expired binding's place and ends its upstream session.
// Its lease in the shared budget is left to expire (Slot.Expire): another
// replica may still serve the session and renew it.
func (b *sessionBinder) drop(s *binding) {
	s.slot.Expire()
	if b.end != nil {
		b.end(s, true)
	}
}

// sweep drops idle bindings, at most every min(idle/2, 1 minute).
func (b *sessionBinder) sweep() {
	b.mu.Lock()
	now := b.now()
	if now.Sub(b.swept) <= min(b.idle/2, time.Minute) {
		b.mu.Unlock()
		return
	}
	b.swept = now
	var expired []*binding
	for id, s := range b.sessions {
		if s.slot.IdleFor() > b.idle {
			delete(b.sessions, id)
			expired = append(expired, s)
		}
	}
	b.mu.Unlock()
	for _, s := range expired {
		b.drop(s)
	}
}

func (b *sessionBinder) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// ownerLen is the number of bindings and reservations of owner.
func (b *sessionBinder) ownerLen(owner string) int { return b.slots.SubjectLen(owner) }

// busy is the number of owner's bindings in use (tests).
func (b *sessionBinder) busy(owner string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.sessions {
		if s.owner == owner && s.slot.InUse() {
			n++
		}
	}
	return n
}
