package gateway

import (
	"bytes"
	"encoding/json"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// listKeys are the result members holding list entries. A JSON parser can
// read one of these member names from a message only if the message
// contains it literally or spells it with a \u escape (every other escape
// and every invalid byte decode to something else), so a message with
// neither holds no list and passes without being parsed.
var listKeys = [][]byte{[]byte(`"tools"`), []byte(`"prompts"`), []byte(`"resources"`), []byte(`"resourceTemplates"`)}

func mayHoldList(msg []byte) bool {
	if bytes.Contains(msg, []byte(`\u`)) {
		return true
	}
	for _, k := range listKeys {
		if bytes.Contains(msg, k) {
			return true
		}
	}
	return false
}

// replyFilter returns the response filter of a POST. Every reply is
// filtered by its shape: each list member of a result (tools, prompts,
// resources, resourceTemplates) loses the entries the caller may not use,
// whichever request the reply answers. The id of a reply decides nothing
// here, so no spelling of it (1.0 re-serialised as 1, an escaped string)
// and no other POST's request that an upstream mixes up with this one
// (servers that hold ids as JavaScript numbers route 1 and 1.0 to one
// stream) lets an unfiltered list through. Ids only name the request a
// withheld reply answered, and which tools/list results teach the
// Mcp-Param-* validator, both compared by mcp.CanonicalID.
func (x *exchange) replyFilter() upstream.Filter {
	var (
		lists map[string]bool // canonical ids of tools/list requests
		only  json.RawMessage // the one request's id, for a withheld reply
		n     int
	)
	for i := range x.msgs {
		e := &x.msgs[i]
		if !e.IsRequest() {
			continue
		}
		n++
		only = e.ID
		if e.Method == "tools/list" {
			if lists == nil {
				lists = map[string]bool{}
			}
			k, _ := mcp.CanonicalID(e.ID)
			lists[k] = true
		}
	}
	if n != 1 {
		only = nil
	}
	return func(msg []byte) []byte {
		if !mayHoldList(msg) {
			return msg
		}
		env, err := mcp.PeekOne(msg)
		if err != nil {
			return withheld(only)
		}
		if env.Result == nil {
			return msg
		}
		if k, ok := mcp.CanonicalID(env.ID); ok && lists[k] {
			x.m.params.learn(env.Result)
		}
		return x.m.filterLists(x.caller(), msg, env)
	}
}

// streamFilter filters list results by their shape on streams where the
// request that caused a message is unknown (GET streams, resumption, the
// legacy transport): as replyFilter, and tools lists teach the
// Mcp-Param-* validator.
func (x *exchange) streamFilter() upstream.Filter {
	c := x.caller()
	return func(msg []byte) []byte {
		if !mayHoldList(msg) {
			return msg
		}
		env, err := mcp.PeekOne(msg)
		if err != nil {
			return withheld(nil)
		}
		if env.Result == nil {
			return msg
		}
		x.m.params.learn(env.Result)
		return x.m.filterLists(c, msg, env)
	}
}

// withheld fails closed on a server message the gateway cannot read (not
// JSON-RPC, ambiguous members, not UTF-8) where lists are filtered: it is
// replaced by an error, so that no list result escapes the filter unread.
func withheld(id json.RawMessage) []byte {
	return mcp.ErrorResponse(id, mcp.CodeUpstream, "the upstream MCP server sent a message the gateway cannot read; it was withheld", nil)
}

// filterLists applies the policy's list filter to every list member of
// one response message and rebuilds the message around the filtered
// result.
func (m *mount) filterLists(c *policy.Caller, msg []byte, env mcp.Envelope) []byte {
	res, changed := m.policy.Load().FilterLists(c, env.Result)
	if out, ok := privateList(res); ok { // filtered for c: personal (cache.go)
		res, changed = out, true
	}
	if !changed {
		return msg
	}
	out, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
	}{"2.0", env.ID, res})
	if err != nil {
		return withheld(env.ID)
	}
	return out
}
