package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Envelope is what routing, policy and audit need from one JSON-RPC message.
// The raw bytes are kept so the proxy stays byte-transparent.
type Envelope struct {
	// ID is the raw JSON id (number or string); nil for notifications.
	ID json.RawMessage
	// Method is set for requests and notifications.
	Method string
	// Name is params.name (tools/call, prompts/get) or params.uri
	// (resources/read, resources/subscribe, …), whichever is present.
	Name string
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

type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

type wireParams struct {
	Name            string `json:"name"`
	URI             string `json:"uri"`
	ProtocolVersion string `json:"protocolVersion"`
	Meta            struct {
		Version string `json:"io.modelcontextprotocol/protocolVersion"`
	} `json:"_meta"`
}

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
func PeekOne(raw []byte) (Envelope, error) {
	var w wireMessage
	if err := json.Unmarshal(raw, &w); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.JSONRPC != "2.0" {
		return Envelope{}, fmt.Errorf("%w: jsonrpc must be \"2.0\"", ErrMalformed)
	}
	e := Envelope{Raw: raw, Params: w.Params, Result: w.Result, Error: w.Error}
	if len(w.ID) > 0 && !bytes.Equal(w.ID, []byte("null")) {
		switch w.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			e.ID = w.ID
		default:
			return Envelope{}, fmt.Errorf("%w: id must be a string or a number", ErrMalformed)
		}
	}
	if w.Method != nil {
		if *w.Method == "" {
			return Envelope{}, fmt.Errorf("%w: empty method", ErrMalformed)
		}
		e.Method = *w.Method
	} else if w.Result == nil && w.Error == nil {
		return Envelope{}, fmt.Errorf("%w: neither method nor result nor error", ErrMalformed)
	}
	if len(w.Params) > 0 && w.Params[0] == '{' {
		var p wireParams
		// Params of unexpected shape (name as a number, say) are left for the
		// upstream to reject; only the routing fields matter here.
		if err := json.Unmarshal(w.Params, &p); err == nil {
			e.Name = p.Name
			if e.Name == "" {
				e.Name = p.URI
			}
			e.MetaVersion = p.Meta.Version
			e.InitVersion = p.ProtocolVersion
		}
	}
	return e, nil
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
