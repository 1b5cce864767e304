package gateway

import (
	"bytes"
	"encoding/json"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// listKeys maps each filtered list method to the result member holding the
// entries, used to recognise list results on streams where the request is
// not known (GET streams, resumption, the legacy transport).
var listKeys = []struct{ method, key string }{
	{"tools/list", `"tools"`},
	{"prompts/list", `"prompts"`},
	{"resources/list", `"resources"`},
	{"resources/templates/list", `"resourceTemplates"`},
}

// listFilter returns the response filter of a POST: results of the list
// requests it carries are reduced to what the caller may use, and tool
// definitions teach the Mcp-Param-* validator. nil when the POST carries
// no list request.
func (x *exchange) listFilter() upstream.Filter {
	var pending map[string]string // request id → method
	eng := x.m.policy.Load()
	for i := range x.msgs {
		e := &x.msgs[i]
		if e.IsRequest() && (eng.Filters(e.Method) || e.Method == "tools/list") {
			if pending == nil {
				pending = map[string]string{}
			}
			pending[string(e.ID)] = e.Method
		}
	}
	if pending == nil {
		return nil
	}
	c := x.caller()
	var only json.RawMessage // the id to answer with when a reply is withheld
	if len(pending) == 1 {
		for id := range pending {
			only = json.RawMessage(id)
		}
	}
	return func(msg []byte) []byte {
		env, err := mcp.PeekOne(msg)
		if err != nil {
			return withheld(only)
		}
		if env.Result == nil {
			return msg
		}
		method, ok := pending[string(env.ID)]
		if !ok {
			return msg
		}
		return x.m.filterResult(c, method, msg, env)
	}
}

// streamFilter filters list results by their shape: on a GET stream the
// request that caused a response is unknown (it may be a resumed POST
// stream), and an unfiltered list must never slip through that way.
func (x *exchange) streamFilter() upstream.Filter {
	c := x.caller()
	return func(msg []byte) []byte {
		if !bytes.Contains(msg, []byte(`"result"`)) {
			return msg
		}
		env, err := mcp.PeekOne(msg)
		if err != nil {
			return withheld(nil)
		}
		if env.Result == nil {
			return msg
		}
		for _, lk := range listKeys {
			if bytes.Contains(env.Result, []byte(lk.key)) {
				msg = x.m.filterResult(c, lk.method, msg, env)
				if env, err = mcp.PeekOne(msg); err != nil || env.Result == nil {
					return msg
				}
			}
		}
		return msg
	}
}

// withheld fails closed on a server message the gateway cannot read (not
// JSON-RPC, ambiguous members, not UTF-8) where lists are filtered: it is
// replaced by an error, so that no list result escapes the filter unread.
func withheld(id json.RawMessage) []byte {
	return mcp.ErrorResponse(id, mcp.CodeUpstream, "the upstream MCP server sent a message the gateway cannot read; it was withheld", nil)
}

// filterResult applies the policy's list filter to one response message and
// rebuilds the message around the filtered result.
func (m *mount) filterResult(c *policy.Caller, method string, msg []byte, env mcp.Envelope) []byte {
	if method == "tools/list" {
		m.params.learn(env.Result)
	}
	eng := m.policy.Load()
	if !eng.Filters(method) {
		return msg
	}
	res, changed := eng.FilterResult(c, method, env.Result)
	if !changed {
		return msg
	}
	out, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
	}{"2.0", env.ID, res})
	if err != nil {
		return msg
	}
	return out
}
