package session

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Multi Round-Trip Requests (2026-07-28, SEP-2322). A stateless request
// has no session through which the client could answer a server's
// sampling/createMessage, elicitation/create or roots/list. When the
// upstream (a session-era server behind the per-request handshake) sends
// one, the gateway answers the client's request with an InputRequiredResult
// that carries it, keeps the upstream connection waiting, and resumes it
// when the client retries the request with inputResponses and the
// requestState it was given.

// inputMethods are the server requests that travel as inputRequests.
var inputMethods = map[string]bool{"sampling/createMessage": true, "elicitation/create": true, "roots/list": true}

// maxParked bounds upstream connections waiting for a client's retry.
const maxParked = 256

// parked is an upstream connection waiting for the client's inputResponses:
// a per-request connection (conn), or one request on a task host (host;
// wt is its waiter, origID its id on the host).
type parked struct {
	conn   upstream.Conn
	host   *taskHost
	wt     *waiter
	owner  string // hostKey of the caller the requestState was issued to
	method string // the request it continues, with its name
	name   string
	origID json.RawMessage // the id the upstream knows the request by
	askID  json.RawMessage // the id of the upstream's request for input
	timer  *time.Timer
}

// end gives up the parked request: a per-request connection is closed, a
// request on a task host is forgotten and cancelled there.
func (p *parked) end() {
	if p.host != nil {
		p.host.abandon(p.origID, p.askID)
		return
	}
	_ = p.conn.Close()
}

// inputKey names the one input request of an InputRequiredResult: a
// session-era server asks one thing at a time.
const inputKey = "input-1"

// parking holds the requests waiting for a client's MRTR retry.
type parking struct {
	mu sync.Mutex // guards m
	m  map[string]*parked
}

// park stores p under a new requestState; the connection is closed if the
// client does not come back within ttl. ok is false when too many
// requests are waiting.
func (pk *parking) park(p *parked, ttl time.Duration) (state string, ok bool) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	state = "mcpgate." + hex.EncodeToString(b[:])
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.m == nil {
		pk.m = map[string]*parked{}
	}
	if len(pk.m) >= maxParked {
		return "", false
	}
	pk.m[state] = p
	p.timer = time.AfterFunc(ttl, func() {
		if q := pk.take(state); q != nil {
			q.end()
		}
	})
	return state, true
}

func (pk *parking) take(state string) *parked {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	p := pk.m[state]
	delete(pk.m, state)
	return p
}

// resume returns the connection parked under state if it was issued to
// owner (a hostKey) for the same method and name. The owner's attempt
// uses the state up either way; another caller's leaves it untouched, so
// that knowing a state does not let anyone end someone else's request.
func (pk *parking) resume(state, owner, method, name string) *parked {
	pk.mu.Lock()
	p := pk.m[state]
	if p == nil || p.owner != owner {
		pk.mu.Unlock()
		return nil
	}
	delete(pk.m, state)
	pk.mu.Unlock()
	p.timer.Stop()
	if p.method != method || p.name != name {
		p.end()
		return nil
	}
	return p
}

// closeAll ends every waiting connection (gateway shutdown).
func (pk *parking) closeAll() {
	pk.mu.Lock()
	all := pk.m
	pk.m = nil
	pk.mu.Unlock()
	for _, p := range all {
		p.timer.Stop()
		p.end()
	}
}

// inputParams are the MRTR members of a retried request's params.
type inputParams struct {
	State     string                     `json:"requestState"`
	Responses map[string]json.RawMessage `json:"inputResponses"`
}

func readInputParams(params json.RawMessage) inputParams {
	var p inputParams
	if len(params) > 0 && params[0] == '{' {
		// A map keeps member names exact; encoding/json would also match
		// "REQUESTSTATE" into a struct field.
		var m map[string]json.RawMessage
		if json.Unmarshal(params, &m) == nil {
			_ = json.Unmarshal(m["requestState"], &p.State)
			_ = json.Unmarshal(m["inputResponses"], &p.Responses)
		}
	}
	return p
}

// inputRequired builds the InputRequiredResult answering the client's
// request id with the upstream's pending request.
func inputRequired(id json.RawMessage, method string, params json.RawMessage, state string) []byte {
	req := map[string]any{"method": method}
	if len(params) > 0 {
		req["params"] = params
	}
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{
		"resultType":    "input_required",
		"inputRequests": map[string]any{inputKey: req},
		"requestState":  state,
	}})
	return out
}

func sameID(a, b json.RawMessage) bool { return mcp.SameID(a, b) }
