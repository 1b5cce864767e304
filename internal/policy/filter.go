package policy

import (
	"encoding/json"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// listSpec says where a list result keeps its entries and which operation
// decides whether the caller may use one.
type listSpec struct {
	member string // result member holding the array
	key    string // entry member naming it
	method string // the operation the entry stands for
}

var lists = map[string]listSpec{
	"tools/list":               {"tools", "name", "tools/call"},
	"prompts/list":             {"prompts", "name", "prompts/get"},
	"resources/list":           {"resources", "uri", "resources/read"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate", "resources/read"},
}

// Filters reports whether results of method are filtered.
func (e *Engine) Filters(method string) bool {
	_, ok := lists[method]
	return ok
}

// FilterResult removes from a list result the entries c may not use. Every
// other member of the result and every kept entry stay byte-for-byte as
// they were. changed is false when nothing was removed (or the result is
// not a list of the expected shape): the caller then sends the original.
func (e *Engine) FilterResult(c *Caller, method string, result json.RawMessage) (json.RawMessage, bool) {
	spec, ok := lists[method]
	if !ok {
		return result, false
	}
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	changed := false
	for i := range members {
		if members[i].Key != spec.member {
			continue
		}
		// Every occurrence is filtered: a duplicate member must not carry
		// an unfiltered copy to a parser that keeps the first one.
		filtered, ok := e.filterEntries(c, spec, members[i].Raw)
		if ok {
			members[i].Raw = filtered
			changed = true
		}
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}

// listMembers maps each result member that holds list entries to the list
// method it belongs to.
var listMembers = map[string]string{}

func init() {
	for m, spec := range lists {
		listMembers[spec.member] = m
	}
}

// FilterLists removes from result the entries c may not use in every list
// member it has (tools, prompts, resources, resourceTemplates), whatever
// request it answers: the gateway uses it where the request of a reply is
// not known for certain, so that no list escapes by its id. Like
// FilterResult, other members and kept entries stay byte-for-byte.
func (e *Engine) FilterLists(c *Caller, result json.RawMessage) (json.RawMessage, bool) {
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	changed := false
	for i := range members {
		m, ok := listMembers[members[i].Key]
		if !ok {
			continue
		}
		if filtered, ok := e.filterEntries(c, lists[m], members[i].Raw); ok {
			members[i].Raw = filtered
			changed = true
		}
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}

// filterEntries filters one array of entries; ok is false when nothing was
// removed or raw is not an array.
func (e *Engine) filterEntries(c *Caller, spec listSpec, raw json.RawMessage) (json.RawMessage, bool) {
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return raw, false
	}
	kept := make([]json.RawMessage, 0, len(entries))
	for _, ent := range entries {
		var id map[string]json.RawMessage
		if json.Unmarshal(ent, &id) != nil {
			continue // not an object: drop, it names nothing usable
		}
		var name string
		if json.Unmarshal(id[spec.key], &name) != nil {
			continue
		}
		// A resource whose uri is not in canonical form is dropped by
		// decide: the gateway would refuse to read it, and the rules
		// cannot judge what it names.
		if e.decide(c, spec.method, name, spec.key == "uriTemplate").Allow {
			kept = append(kept, ent)
		}
	}
	if len(kept) == len(entries) {
		return raw, false
	}
	return mcp.JoinArray(kept), true
}
