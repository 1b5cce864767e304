package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Multi Round-Trip Requests (2026-07-28, SEP-2322). A modern server that
// needs sampling, elicitation or roots from the client answers the request
// with an InputRequiredResult. The stdio client of the bridge speaks the
// session era, where the server asks with requests of its own: the bridge
// sends each input request to the client as one, collects the answers, and
// retries the original request with inputResponses and the requestState,
// until the server's result is complete.

// maxInputRounds bounds the retries of one request.
const maxInputRounds = 8

type inputRequired struct {
	Requests map[string]struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	State string
	// completed: elicitationIds of URL-mode elicitations the session-era
	// client accepted this round (elicit.go)
	completed []string
}

// asInputRequired reports whether m is the answer to request key with
// resultType "input_required".
func asInputRequired(m []byte, key string) (*inputRequired, bool) {
	env, err := mcp.PeekOne(m)
	if err != nil || !env.IsResponse() || string(env.ID) != key || env.Result == nil {
		return nil, false
	}
	var r map[string]json.RawMessage
	if json.Unmarshal(env.Result, &r) != nil || string(r["resultType"]) != `"input_required"` {
		return nil, false
	}
	ir := &inputRequired{}
	_ = json.Unmarshal(r["inputRequests"], &ir.Requests)
	_ = json.Unmarshal(r["requestState"], &ir.State)
	return ir, true
}

// askClient sends each input request to the stdio client as a server
// request and returns the results by key. A refusal (an error answer) ends
// the exchange with that error.
func (b *Bridge) askClient(ctx context.Context, ir *inputRequired) (map[string]json.RawMessage, error) {
	keys := make([]string, 0, len(ir.Requests))
	for k := range ir.Requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type pending struct {
		key string
		id  string
		eid string // the elicitationId given to a URL-mode elicitation
		ch  chan mcp.Envelope
	}
	var asked []pending
	defer func() {
		b.mu.Lock()
		for _, p := range asked {
			delete(b.inputWait, p.id)
		}
		b.mu.Unlock()
	}()
	for _, k := range keys {
		req := ir.Requests[k]
		if req.Method == "" {
			return nil, fmt.Errorf("the server's input request %q has no method", k)
		}
		params, eid, err := b.sessionEraInput(req.Method, req.Params)
		if err != nil {
			return nil, err
		}
		req.Params = params
		id := strconv.Quote(fmt.Sprintf("mcpgate-input-%d", b.inputSeq.Add(1)))
		p := pending{key: k, id: id, eid: eid, ch: make(chan mcp.Envelope, 1)}
		b.mu.Lock()
		b.inputWait[id] = p.ch
		b.mu.Unlock()
		asked = append(asked, p)
		msg := map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": req.Method}
		if len(req.Params) > 0 {
			msg["params"] = req.Params
		}
		out, _ := json.Marshal(msg)
		b.write(out)
	}
	results := map[string]json.RawMessage{}
	for _, p := range asked {
		select {
		case env := <-p.ch:
			if env.Error != nil {
				var e struct {
					Message string `json:"message"`
				}
				_ = json.Unmarshal(env.Error, &e)
				return nil, errors.New("the client declined " + ir.Requests[p.key].Method + ": " + e.Message)
			}
			results[p.key] = env.Result
			if p.eid != "" && accepted(env.Result) {
				ir.completed = append(ir.completed, p.eid)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return results, nil
}

// withInput returns the request raw under a new id (a retry must not
// reuse the first request's), with params.inputResponses and
// params.requestState set (replacing those of an earlier round).
func withInput(raw []byte, id json.RawMessage, responses map[string]json.RawMessage, state string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["id"] = id
	params := map[string]json.RawMessage{}
	if len(m["params"]) > 0 {
		if err := json.Unmarshal(m["params"], &params); err != nil {
			return nil, err
		}
	}
	resp, _ := json.Marshal(responses)
	params["inputResponses"] = resp
	if state != "" {
		st, _ := json.Marshal(state)
		params["requestState"] = st
	} else {
		delete(params, "requestState")
	}
	p, _ := json.Marshal(params)
	m["params"] = p
	return json.Marshal(m)
}
