package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Envelope is what routing, policy and audit need from one JSON-RPC message.
// The raw bytes are kept so the proxy stays byte-transparent.
type Envelope struct {
	// ID is the raw JSON id (number or string); nil for notifications.
	ID json.RawMessage
	// Method is set for requests and notifications.
	Method string
	// Name is the routing key: the params member the server acts on, read
	// exactly and only from that member — params.name for tools/call and
	// prompts/get, params.uri for resources/read, resources/subscribe and
	// resources/unsubscribe, params.ref.name or params.ref.uri (by
	// ref.type) for completion/complete, params.taskId for tasks/get,
	// tasks/update, tasks/cancel and tasks/result. Peek refuses such a request when
	// the member is missing or not a string (ErrInvalidParams). Empty for
	// every other method.
	Name string
	// Ref is params.ref.type of a completion/complete request (RefPrompt
	// or RefResource): the prompt or resource template Name names.
	Ref string
	// MetaVersion is params._meta["io.modelcontextprotocol/protocolVersion"].
	MetaVersion string
	// InitVersion is params.protocolVersion of an initialize request.
	InitVersion string
	// Params is the raw params object, or nil.
	Params json.RawMessage
	// Result and Error are set on responses.
	Result json.RawMessage
	Error  json.RawMessage
	// Raw is the whole message.
	Raw json.RawMessage
}

// IsRequest reports a message with a method and an id.
func (e *Envelope) IsRequest() bool { return e.Method != "" && e.ID != nil }

// IsNotification reports a message with a method and no id.
func (e *Envelope) IsNotification() bool { return e.Method != "" && e.ID == nil }

// IsResponse reports a message with a result or an error and no method.
func (e *Envelope) IsResponse() bool { return e.Method == "" && (e.Result != nil || e.Error != nil) }

// ErrMalformed is wrapped by every Peek error: the body is not a JSON-RPC 2.0
// message mcpgate can route. Callers answer it with -32700 or -32600.
var ErrMalformed = errors.New("malformed JSON-RPC message")

// ErrTooDeep is returned when the body nests deeper than the configured limit.
var ErrTooDeep = errors.New("JSON nesting too deep")

// Peek decodes the routing fields of a single JSON-RPC message or of a batch
// (a JSON array, allowed by 2025-03-26 only). maxDepth bounds nesting
// (0 means 64). It validates the whole body as JSON.
func Peek(body []byte, maxDepth int) (msgs []Envelope, batch bool, err error) {
	if maxDepth <= 0 {
		maxDepth = 64
	}
	if err := CheckDepth(body, maxDepth); err != nil {
		return nil, false, err
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, true, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if len(raws) == 0 {
			return nil, true, fmt.Errorf("%w: empty batch", ErrMalformed)
		}
		msgs = make([]Envelope, 0, len(raws))
		for _, raw := range raws {
			e, err := PeekOne(raw)
			if err != nil {
				return nil, true, err
			}
			msgs = append(msgs, e)
		}
		if err := uniqueIDs(msgs); err != nil {
			return nil, true, err
		}
		return msgs, true, nil
	}
	e, err := PeekOne(body)
	if err != nil {
		return nil, false, err
	}
	return []Envelope{e}, false, nil
}

// PeekOne decodes one JSON-RPC message. It does not check depth; use Peek for
// untrusted bodies.
//
// Member names are matched exactly, and a message is refused when a routing
// member (jsonrpc, id, method, params, result, error; in params: name, uri,
// protocolVersion, _meta) appears twice, or also under a name that differs
// only in case or by escapes ("Method", "\u006dethod"). Parsers disagree
// on such messages — encoding/json matches names case-insensitively and
// keeps the last duplicate, JSON.parse matches exactly — so a gateway that
// read {"name":"secret","NAME":"allowed"} one way could authorize a tool
// that a server written another way never runs.
func PeekOne(raw []byte) (Envelope, error) {
	if !json.Valid(raw) {
		return Envelope{}, fmt.Errorf("%w: the message is not valid JSON", ErrMalformed)
	}
	// JSON text is UTF-8 (RFC 8259 §8.1). encoding/json and JSON.parse
	// turn invalid bytes into U+FFFD, which could make two names that
	// differ here equal at the server; such messages are refused.
	if !utf8.Valid(raw) {
		return Envelope{}, fmt.Errorf("%w: the message is not valid UTF-8", ErrMalformed)
	}
	var (
		e               Envelope
		jsonrpc, method []byte
		hasMethod       bool
		params          []byte
	)
	err := members(raw, topLevel, func(key string, val []byte) error {
		switch key {
		case "jsonrpc":
			jsonrpc = val
		case "id":
			e.ID = val
		case "method":
			method, hasMethod = val, true
		case "params":
			params = val
		case "result":
			e.Result = val
		case "error":
			e.Error = val
		}
		return nil
	})
	if err != nil {
		return Envelope{}, err
	}
	if s, ok := stringValue(jsonrpc); !ok || s != "2.0" {
		return Envelope{}, fmt.Errorf("%w: jsonrpc must be \"2.0\"", ErrMalformed)
	}
	e.Raw, e.Params = raw, params
	if bytes.Equal(e.ID, []byte("null")) {
		e.ID = nil
	}
	if len(e.ID) > 0 {
		if _, ok := CanonicalID(e.ID); !ok {
			return Envelope{}, fmt.Errorf("%w: id must be a string or a number", ErrMalformed)
		}
	}
	if hasMethod {
		m, ok := stringValue(method)
		if !ok {
			return Envelope{}, fmt.Errorf("%w: method must be a string", ErrMalformed)
		}
		if m == "" {
			return Envelope{}, fmt.Errorf("%w: empty method", ErrMalformed)
		}
		e.Method = m
	} else if e.Result == nil && e.Error == nil {
		return Envelope{}, fmt.Errorf("%w: neither method nor result nor error", ErrMalformed)
	}
	var keys keyMembers
	if len(params) > 0 && params[0] == '{' {
		err := members(params, paramMembers, func(key string, val []byte) error {
			// Values of unexpected type are refused below for the methods
			// that route by them, and left to the upstream otherwise.
			switch key {
			case "name":
				keys.name = val
			case "uri":
				keys.uri = val
			case "ref":
				keys.ref = val
			case "taskId":
				keys.taskID = val
			case "protocolVersion":
				e.InitVersion, _ = stringValue(val)
			case "_meta":
				if len(val) > 0 && val[0] == '{' {
					return members(val, metaMembers, func(key string, val []byte) error {
						e.MetaVersion, _ = stringValue(val)
						return nil
					})
				}
			}
			return nil
		})
		if err != nil {
			return Envelope{}, &idError{id: e.ID, err: err}
		}
	}
	if err := e.routingKey(params, &keys); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

var (
	topLevel     = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramMembers = []string{"name", "uri", "ref", "taskId", "protocolVersion", "_meta"}
	metaMembers  = []string{"io.modelcontextprotocol/protocolVersion"}
)

// members calls f for each member of the JSON object obj whose name is one
// of known, with the raw value. obj must be valid JSON (callers check
// json.Valid). A known name seen twice, or a name that equals a known one
// only under case folding (the folding encoding/json uses, so "ſ" counts as
// "s"), is an error.
func members(obj []byte, known []string, f func(key string, val []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var seen uint64 // bit i: known[i] was seen
	i = skipWS(obj, i+1)
	for i < len(obj) && obj[i] != '}' {
		kEnd := skipString(obj, i)
		key, err := decodeKey(obj[i:kEnd])
		if err != nil {
			return err
		}
		i = skipWS(obj, kEnd)
		i = skipWS(obj, i+1) // the colon
		vEnd := skipValue(obj, i)
		if vEnd > len(obj) {
			return fmt.Errorf("%w: truncated object", ErrMalformed)
		}
		for n, k := range known {
			if key == k {
				if seen&(1<<n) != 0 {
					return fmt.Errorf("%w: member %q appears more than once", ErrMalformed, k)
				}
				seen |= 1 << n
				if err := f(k, obj[i:vEnd]); err != nil {
					return err
				}
				break
			}
			if strings.EqualFold(key, k) {
				return fmt.Errorf("%w: member %q is ambiguous next to %q: names must match exactly", ErrMalformed, key, k)
			}
		}
		i = skipWS(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipWS(obj, i+1)
		}
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b) + 1
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b) + 1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b) + 1
	default: // number, true, false, null
		j := i
		for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
			j++
		}
		return j
	}
}

// decodeKey returns the member name of a raw JSON string, decoding escapes.
func decodeKey(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", fmt.Errorf("%w: member name expected", ErrMalformed)
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	if !pairedSurrogates(raw) {
		return "", fmt.Errorf("%w: member name with an unpaired surrogate escape", ErrMalformed)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return s, nil
}

// stringValue decodes a raw JSON string value; ok is false for any other
// value.
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	if !pairedSurrogates(raw) {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// pairedSurrogates reports whether every \\u escape of a UTF-16
// surrogate in the raw JSON string is half of a pair. Decoders disagree on
// an unpaired one (encoding/json and Python's json make it U+FFFD or keep
// it, JSON.parse keeps it), so two names that differ there could be one
// name here and another at the server; strings with one are refused where
// they route.
func pairedSurrogates(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		v, ok := hex4(raw, i+1)
		if !ok {
			return false
		}
		i += 4
		switch {
		case v >= 0xDC00 && v <= 0xDFFF:
			return false
		case v >= 0xD800 && v <= 0xDBFF:
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var v rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// uniqueIDs refuses a batch in which two requests share an id under
// CanonicalID: their answers could not be told apart, by the gateway or by
// the server (which may hold ids as JavaScript numbers), so one answer
// could be taken for the other's.
func uniqueIDs(msgs []Envelope) error {
	seen := make(map[string]bool, len(msgs))
	for i := range msgs {
		if !msgs[i].IsRequest() {
			continue
		}
		k, _ := CanonicalID(msgs[i].ID)
		if seen[k] {
			return fmt.Errorf("%w: request id %s appears more than once in the batch (ids are compared by value: 1, 1.0 and 1e0 are one id)", ErrMalformed, quoteID(msgs[i].ID))
		}
		seen[k] = true
	}
	return nil
}

func quoteID(id []byte) string {
	if len(id) > 40 {
		return string(id[:40]) + "…"
	}
	return string(id)
}

// CheckDepth reports ErrTooDeep when the JSON text nests objects and arrays
// deeper than max. It does not validate the JSON otherwise.
func CheckDepth(body []byte, max int) error {
	depth := 0
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return fmt.Errorf("%w: more than %d levels", ErrTooDeep, max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
