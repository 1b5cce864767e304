package session

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Task hosts (the Tasks extension, io.modelcontextprotocol/tasks, in the
// 2026-07-28 era). A 2026-07-28 request normally gets its own upstream
// connection, closed once it is answered; a task created there could never
// be polled. So a tools/call whose client declared the extension in its
// per-request capabilities is served on the caller's task host: one
// long-lived upstream connection per caller (the owner key of
// upstream.Caller.Owner: issuer and subject) and upstream, dialled and
// initialized once, with the capabilities of the request that opened it.
// tasks/get, tasks/update and tasks/cancel go to the host that created the
// task (params.taskId; the gateway has checked that the task is the
// caller's). Requests on a host are multiplexed: each is sent under a
// gateway id and answered under the client's (the session's pending table,
// conn.go, routes the answers).
//
// A host takes one place of the connection budget (upstream.Slots) like
// any connection. It is busy, and so never evicted, while a request is in
// flight or a task it created is live (not seen in a terminal status,
// within its ttl capped by Options.TaskTTLMax); it is closed when it has
// been neither for Options.IdleTimeout, and at shutdown. A host whose
// connection ends answers its requests in flight with a JSON-RPC error at
// once; its tasks are answered as lost, and the next tools/call opens a
// new host.

// maxHostTasks bounds the task ids one host remembers (the gateway's own
// per-subject budget, limits.max_tasks_per_subject, is smaller by default).
const maxHostTasks = 4096

// maxLostTasks bounds the ids of tasks whose host ended, kept to answer
// them with a clear error.
const maxLostTasks = 16384

// errShuttingDown refuses a host during shutdown.
var errShuttingDown = errors.New("the gateway is shutting down")

// taskHost is one caller's long-lived upstream connection for tasks.
type taskHost struct {
	owner string
	ready chan struct{} // closed once start has returned
	err   error         // start's error, set before ready closes
	ss    *session      // the connection, its pending table and pump (conn.go)
	ids   atomic.Int64  // gateway ids of requests on the host
	idle  sync.Once     // the first request ends the Dial's own busy hold

	mu    sync.Mutex // guards tasks
	tasks map[string]*hostTask
}

// hostTask is what a host knows of a task it created.
type hostTask struct {
	live  bool      // not seen in a terminal status: the host stays busy
	until time.Time // when it stops counting as live (its ttl, capped)
	seen  time.Time
}

// hostTable holds a Server's task hosts.
type hostTable struct {
	mu     sync.Mutex // guards everything below
	m      map[string]*taskHost
	lost   map[string]time.Time // owner NUL taskId of ended hosts → forget after
	closed bool
}

// acquire returns the caller's task host, opening it when there is none.
// Concurrent first requests share one dial; its error (a budget refusal
// included) is each one's.
func (t *hostTable) acquire(s *Server, rl *relay) (*taskHost, error) {
	owner := rl.info.Owner
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errShuttingDown
	}
	h := t.m[owner]
	if h == nil {
		if t.m == nil {
			t.m = map[string]*taskHost{}
		}
		h = &taskHost{owner: owner, ready: make(chan struct{}), tasks: map[string]*hostTask{}}
		t.m[owner] = h
		t.mu.Unlock()
		h.err = h.start(s, rl)
		if h.err != nil {
			t.forget(h)
		}
		close(h.ready)
	} else {
		t.mu.Unlock()
		select {
		case <-h.ready:
		case <-rl.r.Context().Done():
			return nil, rl.r.Context().Err()
		}
	}
	if h.err != nil {
		return nil, h.err
	}
	return h, nil
}

// start dials the host and performs the handshake with the capabilities
// of the request that opens it.
func (h *taskHost) start(s *Server, rl *relay) error {
	ctx := rl.r.Context()
	conn, err := s.o.Dial(context.WithoutCancel(ctx), rl.info)
	if err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	_, err = handshake(hctx, conn, rl.msg)
	cancel()
	if err != nil {
		_ = conn.Close()
		return errors.New("the upstream MCP server did not complete initialization: " + err.Error())
	}
	ss := newSession(s, newID(), conn)
	ss.host = h
	h.ss = ss
	s.hosts.mu.Lock()
	closed := s.hosts.closed
	s.hosts.mu.Unlock()
	if closed {
		ss.close(errShuttingDown)
		return errShuttingDown
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ss.pump()
	}()
	return nil
}

func (t *hostTable) forget(h *taskHost) {
	t.mu.Lock()
	if t.m[h.owner] == h {
		delete(t.m, h.owner)
	}
	t.mu.Unlock()
}

// holding returns owner's live host if it created task, else nil.
func (t *hostTable) holding(owner, task string) *taskHost {
	t.mu.Lock()
	h := t.m[owner]
	t.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h.ready:
	default:
		return nil // still opening: it has created no task yet
	}
	if h.err != nil || !h.has(task) {
		return nil
	}
	return h
}

// ended removes a host whose connection ended and remembers its tasks as
// lost (not at shutdown).
func (t *hostTable) ended(h *taskHost, reason error) {
	t.forget(h)
	ids := h.taskIDs()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(ids) == 0 {
		return
	}
	now := time.Now()
	if t.lost == nil {
		t.lost = map[string]time.Time{}
	}
	if len(t.lost)+len(ids) > maxLostTasks {
		for k, exp := range t.lost {
			if now.After(exp) {
				delete(t.lost, k)
			}
		}
	}
	for _, id := range ids {
		if len(t.lost) >= maxLostTasks {
			return // beyond the bound a lost task is answered as not found
		}
		t.lost[h.owner+"\x00"+id] = now.Add(h.ss.srv.o.IdleTimeout)
	}
}

// wasLost reports whether owner's task was on a host that ended.
func (t *hostTable) wasLost(owner, task string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.lost[owner+"\x00"+task]
	return ok && time.Now().Before(exp)
}

// reap closes hosts idle longer than idle and ends the liveness of tasks
// past their ttl.
func (t *hostTable) reap(now time.Time, idle time.Duration) {
	t.mu.Lock()
	var all []*taskHost
	for _, h := range t.m {
		select {
		case <-h.ready:
			if h.err == nil {
				all = append(all, h)
			}
		default:
		}
	}
	t.mu.Unlock()
	for _, h := range all {
		h.expire(now)
		if h.ss.idleSince(now) > idle {
			h.ss.srv.o.Logger.Info("closing idle task host")
			h.ss.close(errors.New("the task host was idle too long"))
		}
	}
}

// closeAll ends every host (gateway shutdown).
func (t *hostTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	var all []*taskHost
	for _, h := range t.m {
		all = append(all, h)
	}
	t.mu.Unlock()
	for _, h := range all {
		<-h.ready
		if h.err == nil {
			h.ss.close(errShuttingDown)
		}
	}
}

// Len returns the number of open task hosts (tests, metrics).
func (t *hostTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// newID returns a fresh gateway id for a request on the host. The prefix
// keeps it apart from the handshake's id.
func (h *taskHost) newID() json.RawMessage {
	return json.RawMessage(`"mcpgate-task-host-` + strconv.FormatInt(h.ids.Add(1), 10) + `"`)
}

func (h *taskHost) has(task string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tasks[task] != nil
}

func (h *taskHost) taskIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.tasks))
	for id := range h.tasks {
		ids = append(ids, id)
	}
	return ids
}

// add records a task the host created; a live one keeps the host busy.
func (h *taskHost) add(id string, ttl time.Duration, terminal bool) {
	maxTTL := h.ss.srv.o.TaskTTLMax
	if ttl <= 0 || ttl > maxTTL {
		ttl = maxTTL
	}
	now := time.Now()
	delta := 0
	h.mu.Lock()
	t := h.tasks[id]
	if t == nil {
		if len(h.tasks) >= maxHostTasks {
			delta -= h.evictLocked()
		}
		t = &hostTask{}
		h.tasks[id] = t
	}
	t.seen, t.until = now, now.Add(ttl)
	if t.live != !terminal {
		t.live = !terminal
		delta += map[bool]int{true: 1, false: -1}[t.live]
	}
	h.mu.Unlock()
	h.busy(delta)
}

// evictLocked drops the oldest ended task, else the oldest; it returns 1
// when the dropped task was live.
func (h *taskHost) evictLocked() int {
	var victim string
	var v *hostTask
	for id, t := range h.tasks {
		if v == nil || (v.live && !t.live) || (v.live == t.live && t.seen.Before(v.seen)) {
			victim, v = id, t
		}
	}
	delete(h.tasks, victim)
	if v.live {
		return 1
	}
	return 0
}

// ended marks a task as no longer live (a terminal status, a cancellation
// the upstream acknowledged); gone also forgets it (the upstream does not
// know it).
func (h *taskHost) ended(id string, gone bool) {
	delta := 0
	h.mu.Lock()
	if t := h.tasks[id]; t != nil {
		if t.live {
			t.live = false
			delta = -1
		}
		if gone {
			delete(h.tasks, id)
		}
	}
	h.mu.Unlock()
	h.busy(delta)
}

// expire ends the liveness of tasks past their ttl: a client that never
// polls again does not hold the host (and its budget place) forever.
func (h *taskHost) expire(now time.Time) {
	delta := 0
	h.mu.Lock()
	for _, t := range h.tasks {
		if t.live && now.After(t.until) {
			t.live = false
			delta--
		}
	}
	h.mu.Unlock()
	h.busy(delta)
}

// busy adds delta live tasks to the host's activity.
func (h *taskHost) busy(delta int) {
	if delta != 0 {
		h.ss.touch(delta)
	}
}
