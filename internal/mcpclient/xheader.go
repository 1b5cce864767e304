package mcpclient

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// headerParam is one x-mcp-header annotation: the Mcp-Param-{Name}
// header mirrors the argument at Path (a chain of properties keys).
type headerParam struct {
	Name string
	Path []string
	Type string // string, integer, boolean
}

// ToolHeaders validates a tool's inputSchema against the 2026-07-28 rules
// for x-mcp-header and returns its annotations. An annotation that is
// empty, not an HTTP token, duplicated (case-insensitively), on a
// non-primitive or number type, or not statically reachable through
// properties keys makes the whole tool invalid.
func ToolHeaders(schema json.RawMessage) ([]headerParam, error) {
	if len(schema) == 0 {
		return nil, nil
	}
	var root any
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, fmt.Errorf("inputSchema is not JSON: %v", err)
	}
	var out []headerParam
	seen := map[string]bool{}
	var walk func(node any, path []string, reachable bool) error
	walk = func(node any, path []string, reachable bool) error {
		switch n := node.(type) {
		case []any:
			for _, v := range n {
				if err := walk(v, path, false); err != nil {
					return err
				}
			}
		case map[string]any:
			if h, ok := n["x-mcp-header"]; ok {
				name, isStr := h.(string)
				switch {
				case !reachable || len(path) == 0:
					return fmt.Errorf("x-mcp-header at %s is not reachable through properties alone", pathString(path))
				case !isStr || name == "":
					return fmt.Errorf("x-mcp-header of %s is empty or not a string", pathString(path))
				case !isToken(name):
					return fmt.Errorf("x-mcp-header %q of %s is not an HTTP token", name, pathString(path))
				case seen[strings.ToLower(name)]:
					return fmt.Errorf("x-mcp-header %q is used twice", name)
				}
				typ, _ := n["type"].(string)
				if typ != "string" && typ != "integer" && typ != "boolean" {
					return fmt.Errorf("x-mcp-header %q is on %s of type %v (only string, integer, boolean)", name, pathString(path), n["type"])
				}
				seen[strings.ToLower(name)] = true
				out = append(out, headerParam{Name: name, Path: append([]string(nil), path...), Type: typ})
			}
			keys := make([]string, 0, len(n))
			for k := range n {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := n[k]
				if k == "properties" {
					props, ok := v.(map[string]any)
					if !ok {
						continue
					}
					names := make([]string, 0, len(props))
					for p := range props {
						names = append(names, p)
					}
					sort.Strings(names)
					for _, p := range names {
						if err := walk(props[p], append(path, p), reachable); err != nil {
							return err
						}
					}
					continue
				}
				if k == "x-mcp-header" {
					continue
				}
				if err := walk(v, path, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, nil, true); err != nil {
		return nil, err
	}
	return out, nil
}

func pathString(p []string) string {
	if len(p) == 0 {
		return "the schema root"
	}
	return strings.Join(p, ".")
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// headerValue extracts and formats the argument at p.Path ("" and false
// when absent or of the wrong type).
func (p headerParam) value(args map[string]any) (string, bool) {
	var cur any = args
	for _, k := range p.Path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[k]; !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		if p.Type == "string" {
			return v, true
		}
	case bool:
		if p.Type == "boolean" {
			return strconv.FormatBool(v), true
		}
	case float64:
		if p.Type == "integer" && v == math.Trunc(v) && math.Abs(v) <= 1<<53-1 {
			return strconv.FormatInt(int64(v), 10), true
		}
	case json.Number:
		if p.Type == "integer" {
			if n, err := v.Int64(); err == nil && n >= -(1<<53-1) && n <= 1<<53-1 {
				return strconv.FormatInt(n, 10), true
			}
		}
	}
	return "", false
}

// FilterTools removes from a tools/list result the tools whose
// x-mcp-header annotations are invalid (the 2026-07-28 transport requires
// it) and returns the kept tools' annotations and the rejections.
func FilterTools(result json.RawMessage) (json.RawMessage, map[string][]headerParam, []string) {
	var r map[string]json.RawMessage
	if json.Unmarshal(result, &r) != nil {
		return result, nil, nil
	}
	var tools []json.RawMessage
	if json.Unmarshal(r["tools"], &tools) != nil {
		return result, nil, nil
	}
	keep := tools[:0]
	headers := map[string][]headerParam{}
	var rejected []string
	for _, raw := range tools {
		var t struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		_ = json.Unmarshal(raw, &t)
		hs, err := ToolHeaders(t.InputSchema)
		if err != nil {
			rejected = append(rejected, t.Name+": "+err.Error())
			continue
		}
		if len(hs) > 0 {
			headers[t.Name] = hs
		}
		keep = append(keep, raw)
	}
	if len(rejected) == 0 {
		return result, headers, nil
	}
	r["tools"], _ = json.Marshal(keep)
	out, err := json.Marshal(r)
	if err != nil {
		return result, headers, rejected
	}
	return out, headers, rejected
}
