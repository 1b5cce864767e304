package gateway

import (
	"bytes"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// paramHeaders validates Mcp-Param-{Name} headers of 2026-07-28 tools/call
// requests against the body (streamable-http §Custom Headers from Tool
// Parameters). The gateway learns which tool parameters are mirrored from
// the x-mcp-header annotations of tools/list results passing through it;
// headers of tools it has not seen are forwarded unchecked, as the spec
// requires of intermediaries that do not recognise them.
type paramHeaders struct {
	mu    sync.RWMutex // guards tools
	tools map[string][]paramHeader
}

// paramHeader is one annotated property: its header name (canonical form)
// and the chain of properties keys leading to it.
type paramHeader struct {
	header string
	path   []string
}

const (
	maxLearnedTools  = 10000
	maxSchemaDepth   = 16
	maxParamsPerTool = 64
)

func newParamHeaders() *paramHeaders { return &paramHeaders{tools: map[string][]paramHeader{}} }

// learn records the annotations of every tool in a tools/list result. A
// tool without annotations is recorded too, so a later header for it is
// known to be unexpected only if the tool gains one.
func (p *paramHeaders) learn(result json.RawMessage) {
	if !bytes.Contains(result, []byte("x-mcp-header")) {
		return
	}
	var res struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(result, &res) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range res.Tools {
		var hs []paramHeader
		collectParams(t.InputSchema, nil, 0, &hs)
		if len(hs) == 0 {
			delete(p.tools, t.Name)
			continue
		}
		if _, ok := p.tools[t.Name]; !ok && len(p.tools) >= maxLearnedTools {
			continue
		}
		p.tools[t.Name] = hs
	}
}

// collectParams walks properties chains only (the statically reachable
// properties the spec allows to be annotated).
func collectParams(schema json.RawMessage, path []string, depth int, out *[]paramHeader) {
	if depth > maxSchemaDepth || len(*out) >= maxParamsPerTool {
		return
	}
	var s struct {
		Header     *string                    `json:"x-mcp-header"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return
	}
	if s.Header != nil && depth > 0 && validToken(*s.Header) {
		*out = append(*out, paramHeader{header: http.CanonicalHeaderKey(mcp.HeaderParamPrefix + *s.Header), path: append([]string(nil), path...)})
	}
	for k, v := range s.Properties {
		collectParams(v, append(path, k), depth+1, out)
	}
}

// check validates the Mcp-Param-* headers of a tools/call against its
// arguments: a value present in the body needs its header with the same
// value; a header without a body value is a mismatch too.
func (p *paramHeaders) check(h http.Header, e *mcp.Envelope) *failure {
	if e.Method != "tools/call" {
		return nil
	}
	p.mu.RLock()
	hs := p.tools[e.Name]
	p.mu.RUnlock()
	if len(hs) == 0 {
		return nil
	}
	// A map matches member names exactly (a struct field would also take
	// "ARGUMENTS", which servers ignore); a case variant is refused.
	var params map[string]json.RawMessage
	if json.Unmarshal(e.Params, &params) != nil {
		return nil // the upstream answers malformed params
	}
	for k := range params {
		if k != "arguments" && strings.EqualFold(k, "arguments") {
			return mismatch("params has a member " + quoteSafe(k) + " next to arguments: names must match exactly")
		}
	}
	var args any
	if raw := params["arguments"]; len(raw) > 0 {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		_ = d.Decode(&args)
	}
	for _, ph := range hs {
		vals := h.Values(ph.header)
		body, present := lookup(args, ph.path)
		switch {
		case !present && len(vals) == 0:
			continue
		case !present:
			return mismatch(ph.header + " header is set but the argument " + quoteSafe(strings.Join(ph.path, ".")) + " is absent")
		case len(vals) == 0:
			return mismatch(ph.header + " header is required: the argument " + quoteSafe(strings.Join(ph.path, ".")) + " is set")
		case len(vals) > 1:
			return mismatch(ph.header + " header appears more than once")
		}
		hv, ok := mcp.DecodeHeaderValue(vals[0])
		if !ok {
			return mismatch(ph.header + " header has invalid characters or a malformed =?base64?…?= value")
		}
		if !sameValue(hv, body) {
			return mismatch(ph.header + " header value " + quoteSafe(hv) + " does not match the body value")
		}
	}
	return nil
}

// lookup returns the non-null value at path.
func lookup(v any, path []string) (any, bool) {
	for _, k := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, v != nil
}

// sameValue compares a header value with a body primitive: strings as is,
// booleans as lowercase words, integers numerically (42 equals 42.0).
func sameValue(hv string, body any) bool {
	switch b := body.(type) {
	case string:
		return hv == b
	case bool:
		if b {
			return hv == "true"
		}
		return hv == "false"
	case json.Number:
		x, ok1 := new(big.Float).SetString(hv)
		y, ok2 := new(big.Float).SetString(b.String())
		return ok1 && ok2 && x.Cmp(y) == 0
	}
	return false
}
