package gateway

import (
	"strconv"
	"sync"
	"time"
)

// sessionBinder binds MCP session ids to the subject that created them, so
// that a session id is never a credential: another subject presenting it
// gets 404, exactly as if it did not exist (MCP security best practices,
// session hijacking: bind sessions to "<user_id>:<session_id>"). The
// binding is also the only source of the session id the gateway sends
// upstream (exchange.forward): a client-supplied id reaches the upstream
// only after lookup found it bound to that caller.
//
// The table is bounded twice: max bindings in all, perOwner per subject.
// A new session reserves its place before initialize goes upstream, so a
// full table is a clear refusal (429 or 503 with Retry-After) and never a
// session the client cannot use. Idle bindings expire.
type sessionBinder struct {
	max      int
	perOwner int
	idle     time.Duration
	now      func() time.Time

	mu       sync.Mutex // guards everything below
	sessions map[string]*binding
	owners   map[string]*ownerSessions
	reserved int       // reservations of initialize requests in flight
	swept    time.Time // last full sweep of idle bindings
}

type binding struct {
	id    string
	owner string
	last  time.Time
}

// ownerSessions are one subject's bindings and reservations.
type ownerSessions struct {
	ids      map[string]*binding
	reserved int
}

func (o *ownerSessions) used() int { return len(o.ids) + o.reserved }

// bindRefusal explains why a session cannot be started.
type bindRefusal struct {
	perSubject bool
	limit      int
	retryAfter time.Duration
}

func (r *bindRefusal) status() int {
	if r.perSubject {
		return 429
	}
	return 503
}

func (r *bindRefusal) message() string {
	if r.perSubject {
		return "too many sessions for this subject on this upstream (" + strconv.Itoa(r.limit) +
			", limits.max_sessions_per_subject): end one with DELETE, or retry after an idle one expires"
	}
	return "this upstream's session table is full (" + strconv.Itoa(r.limit) + " sessions): retry later"
}

func (r *bindRefusal) retryAfterSeconds() string {
	return strconv.Itoa(max(1, int((r.retryAfter+time.Second-1)/time.Second)))
}

func newSessionBinder(max, perOwner int, idle time.Duration) *sessionBinder {
	return &sessionBinder{max: max, perOwner: min(max, perOwner), idle: idle, now: time.Now,
		sessions: map[string]*binding{}, owners: map[string]*ownerSessions{}}
}

// reserve takes a place for a session owner is about to create; it must be
// followed by commit or release. Idle bindings are dropped first.
func (b *sessionBinder) reserve(owner string) *bindRefusal {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.swept) > min(b.idle/2, time.Minute) {
		b.expireLocked(now)
	}
	o := b.owners[owner]
	if o != nil && o.used() >= b.perOwner {
		b.expireOwnerLocked(o, now)
		o = b.owners[owner] // gone when nothing of it was left
	}
	if o != nil && o.used() >= b.perOwner {
		// The soonest one of this subject's bindings can expire.
		wait := b.idle
		for _, s := range o.ids {
			wait = min(wait, b.idle-now.Sub(s.last))
		}
		return &bindRefusal{perSubject: true, limit: b.perOwner, retryAfter: wait}
	}
	if len(b.sessions)+b.reserved >= b.max && now.Sub(b.swept) > time.Second {
		b.expireLocked(now) // at most once a second: a sweep walks the whole table
	}
	if len(b.sessions)+b.reserved >= b.max {
		return &bindRefusal{limit: b.max, retryAfter: min(b.idle, 30*time.Second)}
	}
	if o == nil {
		o = &ownerSessions{ids: map[string]*binding{}}
		b.owners[owner] = o
	}
	o.reserved++
	b.reserved++
	return nil
}

// commit turns owner's reservation into the binding of id. It fails (and
// the reservation is released) when id is already bound to another
// subject: an upstream that hands one id to two subjects must not merge
// their sessions.
func (b *sessionBinder) commit(owner, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseLocked(owner)
	if s, ok := b.sessions[id]; ok {
		if s.owner != owner {
			return false
		}
		s.last = b.now()
		return true
	}
	o := b.owners[owner]
	if o == nil {
		o = &ownerSessions{ids: map[string]*binding{}}
		b.owners[owner] = o
	}
	s := &binding{id: id, owner: owner, last: b.now()}
	b.sessions[id] = s
	o.ids[id] = s
	return true
}

// release gives back an unused reservation of owner.
func (b *sessionBinder) release(owner string) {
	b.mu.Lock()
	b.releaseLocked(owner)
	b.mu.Unlock()
}

func (b *sessionBinder) releaseLocked(owner string) {
	o := b.owners[owner]
	if o == nil || o.reserved == 0 {
		return
	}
	o.reserved--
	b.reserved--
	if o.used() == 0 {
		delete(b.owners, owner)
	}
}

// lookup returns the bound session id when id exists and belongs to owner,
// and marks it used. The returned id is the table's, never the caller's
// string: it is what the gateway sends upstream.
func (b *sessionBinder) lookup(id, owner string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[id]
	if !ok || s.owner != owner {
		return "", false
	}
	now := b.now()
	if now.Sub(s.last) > b.idle {
		b.deleteLocked(id, s)
		return "", false
	}
	s.last = now
	return s.id, true
}

func (b *sessionBinder) forget(id string) {
	b.mu.Lock()
	if s, ok := b.sessions[id]; ok {
		b.deleteLocked(id, s)
	}
	b.mu.Unlock()
}

func (b *sessionBinder) deleteLocked(id string, s *binding) {
	delete(b.sessions, id)
	if o := b.owners[s.owner]; o != nil {
		delete(o.ids, id)
		if o.used() == 0 {
			delete(b.owners, s.owner)
		}
	}
}

func (b *sessionBinder) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// ownerLen is the number of bindings and reservations of owner.
func (b *sessionBinder) ownerLen(owner string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.owners[owner]; o != nil {
		return o.used()
	}
	return 0
}

func (b *sessionBinder) expireLocked(now time.Time) {
	b.swept = now
	for id, s := range b.sessions {
		if now.Sub(s.last) > b.idle {
			b.deleteLocked(id, s)
		}
	}
}

func (b *sessionBinder) expireOwnerLocked(o *ownerSessions, now time.Time) {
	for id, s := range o.ids {
		if now.Sub(s.last) > b.idle {
			b.deleteLocked(id, s)
		}
	}
}
