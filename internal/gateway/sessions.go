package gateway

import (
	"sync"
	"time"
)

// sessionBinder binds MCP session ids to the subject that created them, so
// that a session id is never a credential: another subject presenting it
// gets 404, exactly as if it did not exist (MCP security best practices,
// session hijacking: bind sessions to "<user_id>:<session_id>").
type sessionBinder struct {
	max  int
	idle time.Duration
	now  func() time.Time

	mu       sync.Mutex // guards sessions
	sessions map[string]*binding
}

type binding struct {
	owner string
	last  time.Time
}

func newSessionBinder(max int, idle time.Duration) *sessionBinder {
	return &sessionBinder{max: max, idle: idle, now: time.Now, sessions: map[string]*binding{}}
}

// bind records that owner created session id. It returns false when the
// table is full even after dropping expired entries.
func (b *sessionBinder) bind(id, owner string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sessions) >= b.max {
		b.expireLocked()
		if len(b.sessions) >= b.max {
			return false
		}
	}
	b.sessions[id] = &binding{owner: owner, last: b.now()}
	return true
}

// owns reports whether session id exists and belongs to owner, and marks it used.
func (b *sessionBinder) owns(id, owner string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[id]
	if !ok || s.owner != owner {
		return false
	}
	if b.now().Sub(s.last) > b.idle {
		delete(b.sessions, id)
		return false
	}
	s.last = b.now()
	return true
}

func (b *sessionBinder) forget(id string) {
	b.mu.Lock()
	delete(b.sessions, id)
	b.mu.Unlock()
}

func (b *sessionBinder) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

func (b *sessionBinder) expireLocked() {
	now := b.now()
	for id, s := range b.sessions {
		if now.Sub(s.last) > b.idle {
			delete(b.sessions, id)
		}
	}
}
