package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
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
	members, err := objectMembers(result)
	if err != nil {
		return result, false
	}
	changed := false
	out := members[:0]
	for _, m := range members {
		switch {
		case m.key != "ttlMs" && m.key != "cacheScope" && (strings.EqualFold(m.key, "ttlMs") || strings.EqualFold(m.key, "cacheScope")):
			changed = true // a case variant of a hint: dropped
			continue
		case m.key != "ttlMs" && m.key != "cacheScope":
		case rt == "input_required":
			changed = true
			continue
		case m.key == "ttlMs" && !bytes.Equal(m.raw, ttlZero):
			m.raw, changed = ttlZero, true
		case m.key == "cacheScope" && !bytes.Equal(m.raw, scopePrivate):
			m.raw, changed = scopePrivate, true
		}
		out = append(out, m)
	}
	if !changed {
		return result, false
	}
	return joinObject(out), true
}

// privateList marks a result holding a list member the gateway filters
// (tools, prompts, resources, resourceTemplates, as policy.FilterLists)
// cacheScope "private". A result without a list member is unchanged.
func privateList(result json.RawMessage) (json.RawMessage, bool) {
	members, err := objectMembers(result)
	if err != nil {
		return result, false
	}
	list := false
	for _, m := range members {
		for _, k := range listKeys {
			if `"`+m.key+`"` == string(k) && len(m.raw) > 0 && m.raw[0] == '[' {
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
		if m.key != "cacheScope" && strings.EqualFold(m.key, "cacheScope") {
			// a variant a case-insensitive reader (encoding/json) could
			// take for the hint: dropped
			changed = true
			continue
		}
		if m.key == "cacheScope" {
			found = true
			if !bytes.Equal(m.raw, scopePrivate) {
				m.raw, changed = scopePrivate, true
			}
		}
		kept = append(kept, m)
	}
	members = kept
	if !found {
		members = append(members, objMember{"cacheScope", scopePrivate})
		changed = true
	}
	if !changed {
		return result, false
	}
	return joinObject(members), true
}

type objMember struct {
	key string
	raw json.RawMessage
}

// objectMembers splits a JSON object into its members in document order,
// values kept as their original bytes.
func objectMembers(b []byte) ([]objMember, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var out []objMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, objMember{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

func joinObject(members []objMember) json.RawMessage {
	var out bytes.Buffer
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(m.raw)
	}
	out.WriteByte('}')
	return out.Bytes()
}

func joinArray(items []json.RawMessage) json.RawMessage {
	var out bytes.Buffer
	out.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(it)
	}
	out.WriteByte(']')
	return out.Bytes()
}
