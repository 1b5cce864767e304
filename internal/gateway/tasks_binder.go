package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// The binding table has a budget per subject (issuer and subject, whatever
// client id they call through: one subject holds at most
// limits.max_tasks_per_subject bindings on an upstream) and in all, and
// every binding expires (the task's ttl, capped by limits.task_ttl_max).
// A binding whose task the caller cancelled through the gateway, or that a
// reply or notification shows in a terminal status (completed, failed,
// cancelled: "Terminal states: completed, failed, cancelled"), is kept only
// for taskTerminalGrace more, long enough to fetch the result. A full
// table first drops expired bindings; a live binding of another subject is
// never evicted. When a binding is refused the upstream has already
// created the task: the gateway asks it to cancel that task (cancelOrphan,
// best effort, bounded) and answers the call with its own code (-42900
// for the subject's budget, -50300 for a full table, -50200 for an
// upstream that reused another caller's id).

// taskBinder binds task ids to the caller that created them.
type taskBinder struct {
	max      int
	perOwner int
	maxTTL   time.Duration
	now      func() time.Time
	// shared counts perOwner over every replica (Redis mode, budgets.go):
	// a binding holds a lease named by its task id, so that replicas that
	// adopt the task share it; nil in memory mode. A binding that ends
	// stops being renewed and its lease expires within lease_ttl.
	shared *leaseBudget

	mu      sync.Mutex // guards everything below
	tasks   map[string]*taskBinding
	owners  map[string]int // bindings per subject (taskBudgetKey)
	swept   time.Time
	cancels int // orphan cancellations in flight (cancelOrphan)
}

type taskBinding struct {
	owner   string // issuer, subject and client id (taskOwner)
	budget  string // issuer and subject (taskBudgetKey)
	tool    string
	expires time.Time
}

// taskTerminalGrace is how long a binding outlives a terminal status or a
// cancellation seen by the gateway.
const taskTerminalGrace = 2 * time.Minute

// maxOrphanCancels bounds the tasks/cancel requests for orphaned tasks in
// flight per upstream; beyond it an orphan is left to its ttl.
const maxOrphanCancels = 8

// orphanCancelTimeout bounds one orphan cancellation.
const orphanCancelTimeout = 10 * time.Second

func newTaskBinder(l config.Limits) *taskBinder {
	b := &taskBinder{max: l.MaxTasks, perOwner: l.MaxTasksPerSubject, maxTTL: l.TaskTTLMax.Duration, now: time.Now,
		tasks: map[string]*taskBinding{}, owners: map[string]int{}}
	if b.max <= 0 {
		b.max = 100000
	}
	if b.perOwner <= 0 {
		b.perOwner = 256
	}
	if b.maxTTL <= 0 {
		b.maxTTL = 24 * time.Hour
	}
	b.perOwner = min(b.perOwner, b.max)
	return b
}

// taskRefusal says why a task could not be bound, and the code the call
// is answered with (an application code, mcp.AppCode).
type taskRefusal struct {
	code int
	msg  string
}

func (r *taskRefusal) Error() string { return r.msg }

// bind records that owner's call of tool created task id, for ttl (0: none
// given). An id already bound to someone else is refused: an upstream that
// hands one id to two callers must not let the second read the first's
// task. A full budget is refused too.
func (b *taskBinder) bind(id, owner, budget, tool string, ttl time.Duration) error {
	added, err := b.bindLocal(id, owner, budget, tool, ttl)
	if err != nil || !added || b.shared == nil {
		return err
	}
	return b.bindShared(id, owner, budget)
}

// bindLocal is bind on this replica's table; added reports a new binding.
func (b *taskBinder) bindLocal(id, owner, budget, tool string, ttl time.Duration) (added bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if ttl <= 0 || ttl > b.maxTTL {
		ttl = b.maxTTL
	}
	if t, ok := b.tasks[id]; ok && now.Before(t.expires) {
		if t.owner != owner || t.tool != tool {
			return false, &taskRefusal{mcp.CodeUpstream, "the upstream returned a task id that is already bound to another caller"}
		}
		t.expires = now.Add(ttl)
		return false, nil
	} else if ok {
		b.deleteLocked(id, t)
	}
	if b.owners[budget] >= b.perOwner {
		b.expireLocked(now, budget)
	}
	if b.owners[budget] >= b.perOwner {
		return false, &taskRefusal{mcp.CodeRateLimited, "too many tasks for this subject on this upstream (" + strconv.Itoa(b.perOwner) +
			", limits.max_tasks_per_subject, counted over all its client ids): the gateway asked the upstream to cancel this one; retry after one of your tasks ends"}
	}
	if len(b.tasks) >= b.max && now.Sub(b.swept) > time.Second {
		b.expireLocked(now, "") // at most once a second: a sweep walks the whole table
	}
	if len(b.tasks) >= b.max {
		return false, &taskRefusal{mcp.CodeUnavailable, "this upstream's task table is full (" + strconv.Itoa(b.max) +
			" tasks, limits.max_tasks): the gateway asked the upstream to cancel this one; retry later"}
	}
	b.tasks[id] = &taskBinding{owner: owner, budget: budget, tool: tool, expires: now.Add(ttl)}
	b.owners[budget]++
	return true, nil
}

// ended shortens the binding of task id, when it is owner's, to
// taskTerminalGrace: the task reached a terminal status or was cancelled.
func (b *taskBinder) ended(id, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tasks[id]
	if !ok || t.owner != owner {
		return
	}
	if end := b.now().Add(taskTerminalGrace); end.Before(t.expires) {
		t.expires = end
	}
}

// cancelSlot takes one of the maxOrphanCancels slots; release returns it.
func (b *taskBinder) cancelSlot() (release func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancels >= maxOrphanCancels {
		return nil, false
	}
	b.cancels++
	return func() {
		b.mu.Lock()
		b.cancels--
		b.mu.Unlock()
	}, true
}

// lookup returns the tool of task id when it is bound to owner and has not
// expired.
func (b *taskBinder) lookup(id, owner string) (tool string, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tasks[id]
	if !ok || t.owner != owner {
		return "", false
	}
	if !b.now().Before(t.expires) {
		b.deleteLocked(id, t)
		return "", false
	}
	return t.tool, true
}

func (b *taskBinder) deleteLocked(id string, t *taskBinding) {
	delete(b.tasks, id)
	if b.owners[t.budget]--; b.owners[t.budget] <= 0 {
		delete(b.owners, t.budget)
	}
}

// expireLocked drops expired bindings, of one subject (budget key) only
// when budget is set (a walk of the whole table otherwise).
func (b *taskBinder) expireLocked(now time.Time, budget string) {
	if budget == "" {
		b.swept = now
	}
	for id, t := range b.tasks {
		if (budget == "" || t.budget == budget) && !now.Before(t.expires) {
			b.deleteLocked(id, t)
		}
	}
}

func (b *taskBinder) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.tasks)
}
