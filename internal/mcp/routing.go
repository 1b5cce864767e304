package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalidParams is wrapped by Peek errors for a request whose routing
// key (the params member the server acts on) is missing or not a string.
// Callers answer it with -32602, carrying the id from ErrorID.
var ErrInvalidParams = errors.New("invalid params")

// routeMembers maps each method whose target the policy decides to the
// params member the server acts on. The gateway reads exactly that member,
// and never another one in its place: a resources/read with a harmless
// params.name next to the params.uri it reads is routed by the uri.
//
// completion/complete routes by params.ref instead (see refMember).
var routeMembers = map[string]string{
	"tools/call":            "name",
	"prompts/get":           "name",
	"resources/read":        "uri",
	"resources/subscribe":   "uri",
	"resources/unsubscribe": "uri",
	// The Tasks extension (SEP-2663) and the 2025-11-25 tasks utility act
	// on the task params.taskId names.
	"tasks/get":    "taskId",
	"tasks/update": "taskId",
	"tasks/cancel": "taskId",
	"tasks/result": "taskId",
}

// IsTaskMethod reports the methods that act on one task, routed by
// params.taskId (Envelope.Name).
func IsTaskMethod(method string) bool {
	return routeMembers[method] == "taskId"
}

// RefPrompt and RefResource are the completion/complete reference types
// (server/utilities/completion §Reference Types).
const (
	RefPrompt   = "ref/prompt"
	RefResource = "ref/resource"
)

// refMember maps a completion reference type to the member naming its
// target: a prompt by name, a resource template by uri.
var refMember = map[string]string{RefPrompt: "name", RefResource: "uri"}

var refMembers = []string{"type", "name", "uri"}

// HasRoutingKey reports methods whose Envelope.Name is required: the
// policy decides on it, so a request without a string key is refused.
func HasRoutingKey(method string) bool {
	_, ok := routeMembers[method]
	return ok || method == "completion/complete"
}

// keyMembers are the raw values of the params (or params.ref) members a
// routing key can come from; nil when absent.
type keyMembers struct{ typ, name, uri, ref, taskID []byte }

func (k *keyMembers) get(member string) []byte {
	switch member {
	case "name":
		return k.name
	case "taskId":
		return k.taskID
	}
	return k.uri
}

// routingKey sets e.Name (and e.Ref) from the params member the server of
// e.Method acts on; params is the raw params.
func (e *Envelope) routingKey(params []byte, vals *keyMembers) error {
	if !HasRoutingKey(e.Method) {
		return nil
	}
	if len(params) == 0 || params[0] != '{' {
		return e.invalid("params must be an object")
	}
	if e.Method != "completion/complete" {
		m := routeMembers[e.Method]
		s, err := keyString(vals.get(m), "params."+m)
		if err != nil {
			return e.invalid(err.Error())
		}
		if m == "uri" {
			if err := CheckResourceURI(s); err != nil {
				return e.invalid(err.Error())
			}
		}
		e.Name = s
		return nil
	}
	ref := vals.ref
	if len(ref) == 0 || ref[0] != '{' {
		return e.invalid("params.ref must be an object")
	}
	var rv keyMembers
	err := members(ref, refMembers, func(k string, v []byte) error {
		switch k {
		case "type":
			rv.typ = v
		case "name":
			rv.name = v
		case "uri":
			rv.uri = v
		}
		return nil
	})
	if err != nil {
		return &idError{id: e.ID, err: err}
	}
	typ, err := keyString(rv.typ, "params.ref.type")
	if err != nil {
		return e.invalid(err.Error())
	}
	m, ok := refMember[typ]
	if !ok {
		return e.invalid("params.ref.type must be " + RefPrompt + " or " + RefResource)
	}
	s, err := keyString(rv.get(m), "params.ref."+m)
	if err != nil {
		return e.invalid(err.Error())
	}
	if m == "uri" {
		if err := CheckResourceTemplate(s); err != nil {
			return e.invalid(err.Error())
		}
	}
	e.Ref, e.Name = typ, s
	return nil
}

func keyString(raw []byte, what string) (string, error) {
	if raw == nil {
		return "", errors.New(what + " is required")
	}
	s, ok := stringValue(raw)
	if !ok {
		return "", errors.New(what + " must be a string")
	}
	return s, nil
}

func (e *Envelope) invalid(msg string) error {
	return &idError{id: e.ID, err: fmt.Errorf("%w: %s %s", ErrInvalidParams, e.Method, msg)}
}

// idError carries the id of the request an error is about.
type idError struct {
	id  json.RawMessage
	err error
}

func (e *idError) Error() string { return e.err.Error() }
func (e *idError) Unwrap() error { return e.err }

// ErrorID returns the id of the request a Peek error is about, or nil when
// none could be determined (the error answer then carries id null).
func ErrorID(err error) json.RawMessage {
	var ie *idError
	if errors.As(err, &ie) {
		return ie.id
	}
	return nil
}
