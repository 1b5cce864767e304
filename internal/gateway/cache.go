package gateway

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Cache hints (2026-07-28 server/utilities/caching). Cacheable results
// carry ttlMs and cacheScope ("public" or "private") at the top level of
// the result (schema CacheableResult). The gateway corrects them where
// what it forwards is not what the upstream described:
//
//   - a list result the gateway filters for its caller is personal, so it
//     is marked cacheScope "private" (privateList), every page of it,
//     whatever the upstream said: "Caches MUST NOT be shared across
//     authorization contexts";
//   - the result of a request retried through multi round-trip requests
//     (params carrying inputResponses or requestState) "MUST NOT be
//     cached": its ttlMs becomes 0 and its cacheScope "private";
//   - an interim result with resultType "input_required" is "not
//     cacheable and carr[ies] no caching hints": both are removed.

// isRetry reports request params carrying inputResponses or requestState
// (exact member names, as servers read them).
func isRetry(params json.RawMessage) bool {
	if !bytes.Contains(params, []byte("inputResponses")) && !bytes.Contains(params, []byte("requestState")) && !bytes.Contains(params, []byte(`\u`)) {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(params, &m) != nil {
		return false
	}
	_, a := m["inputResponses"]
	_, b := m["requestState"]
	return a || b
}

var (
	scopePrivate = json.RawMessage(`"private"`)
	ttlZero      = json.RawMessage(`0`)
)

// cacheHints corrects the hints of a result: removed on input_required
// results, "not cacheable" (ttlMs 0, private) on the reply to a retry.
func cacheHints(result json.RawMessage, retry bool) (json.RawMessage, bool) {
	rt, _ := exactString(result, "resultType")
	if rt != "input_required" && !retry {
		return result, false
	}
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	changed := false
	out := members[:0]
	for _, m := range members {
		switch {
		case m.Key != "ttlMs" && m.Key != "cacheScope" && (strings.EqualFold(m.Key, "ttlMs") || strings.EqualFold(m.Key, "cacheScope")):
			changed = true // a case variant of a hint: dropped
			continue
		case m.Key != "ttlMs" && m.Key != "cacheScope":
		case rt == "input_required":
			changed = true
			continue
		case m.Key == "ttlMs" && !bytes.Equal(m.Raw, ttlZero):
			m.Raw, changed = ttlZero, true
		case m.Key == "cacheScope" && !bytes.Equal(m.Raw, scopePrivate):
			m.Raw, changed = scopePrivate, true
		}
		out = append(out, m)
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(out), true
}

// privateList marks a result holding a list member the gateway filters
// (tools, prompts, resources, resourceTemplates, as policy.FilterLists)
// cacheScope "private". A result without a list member is unchanged.
func privateList(result json.RawMessage) (json.RawMessage, bool) {
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	list := false
	for _, m := range members {
		for _, k := range listKeys {
			if `"`+m.Key+`"` == string(k) && len(m.Raw) > 0 && m.Raw[0] == '[' {
				list = true
			}
		}
	}
	if !list {
		return result, false
	}
	changed, found := false, false
	kept := members[:0]
	for _, m := range members {
		if m.Key != "cacheScope" && strings.EqualFold(m.Key, "cacheScope") {
			// a variant a case-insensitive reader (encoding/json) could
			// take for the hint: dropped
			changed = true
			continue
		}
		if m.Key == "cacheScope" {
			found = true
			if !bytes.Equal(m.Raw, scopePrivate) {
				m.Raw, changed = scopePrivate, true
			}
		}
		kept = append(kept, m)
	}
	members = kept
	if !found {
		members = append(members, mcp.Member{Key: "cacheScope", Raw: scopePrivate})
		changed = true
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}
