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
// long-lived upstream connection per upstream-visible identity (hostKey,
// hostkey.go: owner, client id and identity headers), dialled and
// initialized once, with the capabilities of the request that opened it.
// tasks/get, tasks/update and tasks/cancel go to the host that created the
// task, named by the host id in the client's task id (hostkey.go); the
// gateway has checked that the task is the caller's, and the host is only
// reached with its own key. Requests on a host are multiplexed: each is
// sent under a gateway id and answered under the client's (the session's
// pending table, conn.go, routes the answers).
//
// A host takes one place of the connection budget (upstream.Slots) like
// any connection, within its subject's share: a subject at its share
// evicts its own least recently used idle host. A host is busy, and so
// never evicted, while a request is in flight or a task it created is
// live (not seen in a terminal status, within its ttl capped by
// Options.TaskTTLMax) and polled: a live task that has had no request for
// Options.IdleTimeout stops holding the host, which any subject may then
// evict when the upstream's total is full (upstream.Slot.Reclaimable).
// A host without live tasks is closed when it has been idle for
// Options.IdleTimeout, and at shutdown. A host whose connection ends
// answers its requests in flight with a JSON-RPC error at once; its tasks
// are answered as lost, and the next tools/call opens a new host.

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
	key   string        // hostKey of the callers it serves
	id    string        // random, the prefix of its task ids (hostkey.go)
	ready chan struct{} // closed once start has returned
	err   error         // start's error, set before ready closes
	ss    *session      // the connection, its pending table and pump (conn.go)
	ids   atomic.Int64  // gateway ids of requests on the host
	idle  sync.Once     // the first request ends the Dial's own busy hold

	mu    sync.Mutex           // guards tasks
	tasks map[string]*hostTask // by the upstream's task id
}

// hostTask is what a host knows of a task it created.
type hostTask struct {
	live   bool      // not seen in a terminal status, within its ttl
	holds  bool      // live and polled within IdleTimeout: the host stays busy
	until  time.Time // when it stops counting as live (its ttl, capped)
	polled time.Time // its creation or the last request naming it
}

// hostTable holds a Server's task hosts.
type hostTable struct {
	mu     sync.Mutex           // guards everything below
	m      map[string]*taskHost // by hostKey
	byID   map[string]*taskHost // by host id
	lost   map[string]time.Time // hostKey NUL client's taskId of ended hosts → forget after
	closed bool
}

// acquire returns the caller's task host, opening it when there is none.
// Concurrent first requests share one dial; its error (a budget refusal
// included) is each one's.
func (t *hostTable) acquire(s *Server, rl *relay) (*taskHost, error) {
	key := hostKey(rl.info)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errShuttingDown
	}
	h := t.m[key]
	if h == nil {
		if t.m == nil {
			t.m, t.byID = map[string]*taskHost{}, map[string]*taskHost{}
		}
		h = &taskHost{key: key, id: newHostID(), ready: make(chan struct{}), tasks: map[string]*hostTask{}}
		t.m[key], t.byID[h.id] = h, h
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
	if r, ok := conn.(interface{ Reclaimable() }); ok {
		r.Reclaimable() // idle, it holds no task polled within IdleTimeout
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
	if t.m[h.key] == h {
		delete(t.m, h.key)
	}
	if t.byID[h.id] == h {
		delete(t.byID, h.id)
	}
	t.mu.Unlock()
}

// holding returns the live host that created task, the client's id,
// when it is the host of key, and the upstream's id of the task; nil
// otherwise.
func (t *hostTable) holding(key, task string) (*taskHost, string) {
	hostID, local, ok := splitTaskID(task)
	if !ok {
		return nil, ""
	}
	t.mu.Lock()
	h := t.byID[hostID]
	t.mu.Unlock()
	if h == nil || h.key != key {
		return nil, ""
	}
	select {
	case <-h.ready:
	default:
		return nil, "" // still opening: it has created no task yet
	}
	if h.err != nil || !h.has(local) {
		return nil, ""
	}
	return h, local
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
		t.lost[h.key+"\x00"+h.qualify(id)] = now.Add(h.ss.srv.o.IdleTimeout)
	}
}

// wasLost reports whether key's task was on a host that ended.
func (t *hostTable) wasLost(key, task string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.lost[key+"\x00"+task]
	return ok && time.Now().Before(exp)
}

// reap ends the liveness of tasks past their ttl, releases the hold of
// live tasks not polled for idle, and closes hosts idle longer than idle
// that hold no live task (one that does stays until its tasks end or the
// budget evicts it).
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
		h.expire(now, idle)
		if h.ss.idleSince(now) > idle && !h.hasLive() {
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

func (h *taskHost) hasLive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.tasks {
		if t.live {
			return true
		}
	}
	return false
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
	t.polled, t.until, t.live = now, now.Add(ttl), !terminal
	delta += t.hold(t.live)
	h.mu.Unlock()
	h.busy(delta)
}

// hold sets whether t keeps its host busy and returns the change in the
// host's count of holding tasks. Called with the host's mu held.
func (t *hostTask) hold(on bool) int {
	if t.holds == on {
		return 0
	}
	t.holds = on
	if on {
		return 1
	}
	return -1
}

// poll notes a request naming the task: a live task holds the host again.
func (h *taskHost) poll(id string) {
	delta := 0
	h.mu.Lock()
	if t := h.tasks[id]; t != nil {
		t.polled = time.Now()
		delta = t.hold(t.live)
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
		if v == nil || (v.live && !t.live) || (v.live == t.live && t.polled.Before(v.polled)) {
			victim, v = id, t
		}
	}
	delete(h.tasks, victim)
	return -v.hold(false)
}

// ended marks a task as no longer live (a terminal status, a cancellation
// the upstream acknowledged); gone also forgets it (the upstream does not
// know it).
func (h *taskHost) ended(id string, gone bool) {
	delta := 0
	h.mu.Lock()
	if t := h.tasks[id]; t != nil {
		t.live = false
		delta = t.hold(false)
		if gone {
			delete(h.tasks, id)
		}
	}
	h.mu.Unlock()
	h.busy(delta)
}

// expire ends the liveness of tasks past their ttl, and the hold of live
// tasks not polled for idle: a client that never polls again does not
// hold the host (and its budget place) for the task's whole ttl.
func (h *taskHost) expire(now time.Time, idle time.Duration) {
	delta := 0
	h.mu.Lock()
	for _, t := range h.tasks {
		if t.live && now.After(t.until) {
			t.live = false
		}
		if !t.live || now.Sub(t.polled) > idle {
			delta += t.hold(false)
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
