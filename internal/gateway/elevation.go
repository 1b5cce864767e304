package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/resource"
)

// Elevation events go to the audit log: "Log elevation events (scope
// requested, granted subset) with correlation IDs" (MCP security best
// practices §Scope Minimization, 2026-07-28). A 403 insufficient_scope
// challenge writes a "scope_challenge" record with the scopes it asks for;
// the first later request of the same subject whose token carries some of
// them writes a "scope_granted" record with the scopes granted and the
// request id of the challenge.
const (
	// elevationTTL is how long a challenge waits for its grant: a step-up
	// involves the user's consent.
	elevationTTL = 15 * time.Minute
	// maxElevations bounds the challenges waiting per upstream; beyond it
	// the oldest waiting one is forgotten (its grant is then not
	// correlated; the challenge itself is in the audit log).
	maxElevations = 10000
)

// pendingElevation is a step-up challenge waiting for its grant.
type pendingElevation struct {
	scopes    []string // challenged scopes the token lacked
	requestID string   // the request that was challenged
	at        time.Time
}

// elevations remembers, per subject, the scopes a step-up challenge asked
// for. It is audit correlation only — it decides nothing — and per
// replica: a grant seen by another replica is not correlated.
type elevations struct {
	n       atomic.Int64 // len(pending), read without the lock on the hot path
	mu      sync.Mutex   // guards pending
	pending map[string]*pendingElevation
	now     func() time.Time
}

func newElevations() *elevations {
	return &elevations{pending: map[string]*pendingElevation{}, now: time.Now}
}

// challenged records that the request requestID of subject key was asked
// for scopes.
func (e *elevations) challenged(key string, scopes []string, requestID string) {
	if len(scopes) == 0 {
		return
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.pending[key]; !ok && len(e.pending) >= maxElevations {
		e.evictLocked(now)
	}
	e.pending[key] = &pendingElevation{scopes: scopes, requestID: requestID, at: now}
	e.n.Store(int64(len(e.pending)))
}

// evictLocked drops the expired entries, or else the oldest one.
func (e *elevations) evictLocked(now time.Time) {
	var oldest string
	var at time.Time
	for k, p := range e.pending {
		if now.Sub(p.at) > elevationTTL {
			delete(e.pending, k)
			continue
		}
		if oldest == "" || p.at.Before(at) {
			oldest, at = k, p.at
		}
	}
	if len(e.pending) >= maxElevations {
		delete(e.pending, oldest)
	}
}

// granted returns the challenge of subject key that a token with scopes
// now (partly) satisfies, and the challenged scopes it grants; the
// challenge is then forgotten. p is nil when there is none.
func (e *elevations) granted(key string, scopes []string, hierarchy map[string][]string) (p *pendingElevation, got []string) {
	if e.n.Load() == 0 {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p = e.pending[key]
	if p == nil {
		return nil, nil
	}
	if e.now().Sub(p.at) > elevationTTL {
		delete(e.pending, key)
		e.n.Store(int64(len(e.pending)))
		return nil, nil
	}
	missing := map[string]bool{}
	for _, s := range resource.HasScopes(scopes, p.scopes, hierarchy) {
		missing[s] = true
	}
	for _, s := range p.scopes {
		if !missing[s] {
			got = append(got, s)
		}
	}
	if len(got) == 0 {
		return nil, nil
	}
	delete(e.pending, key)
	e.n.Store(int64(len(e.pending)))
	return p, got
}

// challenged notes a 403 step-up for the elevation it asks for and
// returns its scope_challenge audit record.
func (x *exchange) challenged(method, name string, scopes, lacking []string) *auditRecord {
	rec := x.record(method, name, "scope_challenge", "insufficient_scope", http.StatusForbidden)
	rec.Scopes = scopes
	x.m.elevations.challenged(x.ownerKey(), lacking, x.id)
	return rec
}

// noteGrant writes the scope_granted record when the caller's token
// carries scopes a step-up challenge asked it for.
func (x *exchange) noteGrant() {
	p, got := x.m.elevations.granted(x.ownerKey(), x.p.Scopes, x.m.cfg.ScopeHierarchy)
	if p == nil {
		return
	}
	rec := x.record("", "", "scope_granted", "", 0)
	rec.Scopes, rec.ChallengeRequestID = got, p.requestID
	x.m.g.audit.write(rec)
}
