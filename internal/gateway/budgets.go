package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Per-subject budgets across replicas (state.redis). Every per-subject
// share of a thing a replica creates for a caller — a session binding of
// an HTTP upstream, an upstream connection (stdio child, legacy SSE
// connection), a long-lived stream, a task binding — is counted over the
// whole deployment with one mechanism, state.Leases: the replica that
// creates the thing takes a lease in the subject's set for that budget
// (one round trip, refused at the share), gives it back when the thing
// ends (one round trip), and renews every lease it holds on a heartbeat
// (one round trip per replica every lease_ttl/3, whatever the number of
// leases up to 2,000). A request to an existing session takes no lease.
// In memory mode there are no budgets and each replica counts alone, as
// always. Tolerance: docs/security.md "Shared state (Redis)".
type budgets struct {
	leases *state.Leases
	log    *slog.Logger
	stop   context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex // guards holders and downUntil
	holders   []func() []state.Held
	downUntil time.Time // releases are left to expire until then
}

// budgetsDownFor is how long releases skip Redis after a failed one, so
// that an outage costs one timeout per second, not one per ended session
// (a lease not released expires within lease_ttl).
const budgetsDownFor = time.Second

// newBudgets is nil without Redis (memory mode).
func newBudgets(r *state.Redis, ttl time.Duration, log *slog.Logger) *budgets {
	if r == nil {
		return nil
	}
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &budgets{leases: state.NewLeases(r, ttl), log: log}
}

// budgetName is the name of a per-upstream budget: kind and a hash of
// the upstream's name (a configured string never makes a key's syntax).
func budgetName(kind, upstreamName string) string {
	h := sha256.Sum256([]byte(upstreamName))
	return kind + ":" + hex.EncodeToString(h[:8])
}

// budget is the shared side of the budget name; held lists the leases
// this replica holds in it, by subject, for the heartbeat.
func (b *budgets) budget(name string, held func() map[string][]string) *leaseBudget {
	b.mu.Lock()
	b.holders = append(b.holders, func() []state.Held {
		var out []state.Held
		for owner, ids := range held() {
			out = append(out, state.Held{Budget: name, Owner: owner, IDs: ids})
		}
		return out
	})
	b.mu.Unlock()
	return &leaseBudget{b: b, name: name}
}

// start renews this replica's leases every lease_ttl/3 until close.
func (b *budgets) start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.stop, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		t := time.NewTicker(b.leases.TTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.renew(ctx)
			}
		}
	}()
}

// renew is one heartbeat. A failure is logged: the leases are written
// again at the next one (Renew re-adds leases that expired meanwhile).
func (b *budgets) renew(ctx context.Context) {
	b.mu.Lock()
	holders := b.holders
	b.mu.Unlock()
	var held []state.Held
	for _, h := range holders {
		held = append(held, h()...)
	}
	if err := b.leases.Renew(ctx, held); err != nil && ctx.Err() == nil {
		b.log.Warn("renewing this replica's budget leases in the shared state failed; they expire unless the next heartbeat succeeds", "err", err)
	}
}

// close stops the heartbeat; the leases still held expire within
// lease_ttl (those whose sessions shutdown ends are released).
func (b *budgets) close() {
	if b == nil || b.stop == nil {
		return
	}
	b.stop()
	<-b.done
}

// releasing reports whether releases should try Redis now.
func (b *budgets) releasing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !time.Now().Before(b.downUntil)
}

func (b *budgets) releaseFailed(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Now().Before(b.downUntil) {
		return
	}
	b.downUntil = time.Now().Add(budgetsDownFor)
	b.log.Warn("releasing a budget lease in the shared state failed; it expires within state.redis.lease_ttl", "err", err)
}

// leaseBudget is one budget's shared side (upstream.Shared).
type leaseBudget struct {
	b    *budgets
	name string
}

// Acquire implements upstream.Shared: a full share is a per-subject
// *upstream.LimitError (Global), a Redis error an Unavailable one: the
// thing is not created (fail closed, 503).
func (l *leaseBudget) Acquire(subject, lease string, share int) error {
	ok, err := l.b.leases.Acquire(context.Background(), l.name, subject, lease, share)
	switch {
	case err != nil:
		l.b.log.Warn("shared state (Redis) unavailable; a per-subject budget could not be checked", "budget", l.name, "err", err)
		return &upstream.LimitError{Unavailable: true}
	case !ok:
		return &upstream.LimitError{PerSubject: true, Global: true, Limit: share}
	}
	return nil
}

// Rename implements upstream.Shared. A failure leaves the old lease to
// expire and the heartbeat writes the new one.
func (l *leaseBudget) Rename(subject, from, to string) {
	if err := l.b.leases.Rename(context.Background(), l.name, subject, from, to); err != nil {
		l.b.releaseFailed(err)
	}
}

// Release implements upstream.Shared.
func (l *leaseBudget) Release(subject, lease string) {
	if !l.b.releasing() {
		return
	}
	if err := l.b.leases.Release(context.Background(), l.name, subject, lease); err != nil {
		l.b.releaseFailed(err)
	}
}

// leaseRefusal maps an Acquire error to its answer's parts.
func leaseRefusal(err error) *upstream.LimitError {
	var le *upstream.LimitError
	if errors.As(err, &le) {
		return le
	}
	return &upstream.LimitError{Unavailable: true}
}

// bindShared takes the lease of task id, which bind just bound here, in
// the subject's shared task budget; a refusal drops the local binding.
func (b *taskBinder) bindShared(id, owner, budget string) error {
	if err := b.shared.Acquire(budget, id, b.perOwner); err != nil {
		b.mu.Lock()
		if t, ok := b.tasks[id]; ok && t.owner == owner {
			b.deleteLocked(id, t)
		}
		b.mu.Unlock()
		if leaseRefusal(err).Unavailable {
			return &taskRefusal{mcp.CodeUnavailable, "shared state (Redis) unavailable: the gateway could not count this task against the subject's budget; the gateway asked the upstream to cancel it; retry shortly"}
		}
		return &taskRefusal{mcp.CodeRateLimited, "too many tasks for this subject on this upstream across the gateway's replicas (" + strconv.Itoa(b.perOwner) +
			", limits.max_tasks_per_subject, counted over all its client ids): the gateway asked the upstream to cancel this one; retry after one of your tasks ends"}
	}
	return nil
}

// held lists the task ids bound here, by budget key (the heartbeat).
func (b *taskBinder) held() map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	out := map[string][]string{}
	for id, t := range b.tasks {
		if now.Before(t.expires) {
			out[t.budget] = append(out[t.budget], id)
		}
	}
	return out
}
