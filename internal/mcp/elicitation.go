package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
)

// URL-mode elicitation (2025-11-25 client/elicitation; 2026-07-28
// client/elicitation with basic/patterns/mrtr). A server directs the user
// to a URL for an interaction that must not pass through the client:
//
//   - 2025-11-25: an elicitation/create server request with mode "url",
//     url and elicitationId; or a -32042 URLElicitationRequired error whose
//     data.elicitations lists such requests; the server MAY later send
//     notifications/elicitation/complete with the elicitationId.
//   - 2026-07-28: an InputRequiredResult whose inputRequests hold
//     elicitation/create requests with mode "url" (no elicitationId); the
//     completion notification and -32042 are gone ("Implementations of
//     this protocol version MUST NOT emit these codes: … -32042").

// CodeURLElicitationRequired is URLElicitationRequiredError (2025-11-25
// only).
const CodeURLElicitationRequired = -32042

// MethodElicitationComplete is the 2025-11-25 completion notification.
const MethodElicitationComplete = "notifications/elicitation/complete"

// MaxElicitationURL bounds the length of an elicitation URL.
const MaxElicitationURL = 8192

// URLElicitation is one URL-mode elicitation found in a message.
type URLElicitation struct {
	Message       string `json:"message"`
	URL           string `json:"url"`
	ElicitationID string `json:"elicitationId,omitempty"`
}

// ErrElicitationURL is wrapped by every refusal of CheckElicitationURL.
var ErrElicitationURL = errors.New("refused elicitation URL")

// CheckElicitationURL decides whether an elicitation URL may be shown to a
// user at all, and returns its host for display. The text: "The url
// parameter MUST contain a valid URL"; servers "MUST NOT include sensitive
// information about the end-user, including credentials" in it and
// "SHOULD use HTTPS URLs for non-development environments"; clients "MUST
// show the full URL" and "SHOULD highlight the domain". A URL the user
// cannot read as it is, or that would run in the client instead of opening
// a web page, fails closed: it must be absolute, https (http only to a
// loopback host, for development), have a host, carry no user info
// (user:password@ is both a credential and the classic way to disguise
// the real host), and consist of printable ASCII only (no spaces, control,
// bidirectional or look-alike characters: an internationalised host
// arrives as punycode, which the user then sees), within
// MaxElicitationURL bytes.
func CheckElicitationURL(raw string) (host string, err error) {
	fail := func(why string) (string, error) {
		return "", errors.Join(ErrElicitationURL, errors.New(why))
	}
	if raw == "" {
		return fail("the URL is empty")
	}
	if len(raw) > MaxElicitationURL {
		return fail("the URL is longer than 8192 bytes")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return fail("the URL contains a space, control or non-ASCII character")
		}
	}
	if strings.Contains(raw, `\`) {
		return fail("the URL contains a backslash")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail("the URL does not parse")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return fail("the URL uses http to a host that is not loopback: only https is accepted")
		}
	default:
		return fail("the URL's scheme is not https")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fail("the URL has no host")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return fail("the URL carries user info (user:password@)")
	}
	return u.Host, nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// MayHoldURLElicitation is a cheap test before parsing: a JSON parser can
// read the string "url" (the mode's value and the member name) from a
// message only if it holds `"url"` literally or uses a \u escape.
func MayHoldURLElicitation(msg []byte) bool {
	return bytes.Contains(msg, []byte(`"url"`)) || bytes.Contains(msg, []byte(`\u`))
}

// exactMembers decodes a JSON object with exact member names (encoding/json
// would also match "URL" into a field named url, where a JavaScript client
// reads only "url"); duplicate members keep the last, as JSON.parse does.
func exactMembers(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	return s, len(raw) > 0 && json.Unmarshal(raw, &s) == nil
}

// URLElicitations returns every URL-mode elicitation a server→client
// message holds, wherever the protocol can carry one (elicitWalker): an
// elicitation/create request, a -32042 error's data.elicitations, an
// InputRequiredResult's inputRequests, and the same one level down inside
// a task (the Tasks extension's DetailedTask, in a tasks/get result or a
// notifications/tasks params, carries inputRequests, a final result and a
// JSON-RPC error). ok is false when the message holds something that reads
// as a URL elicitation, or a place one may be, that cannot be read
// completely (fail closed: the caller withholds it).
func URLElicitations(msg []byte) (found []URLElicitation, ok bool) {
	if !MayHoldURLElicitation(msg) {
		return nil, true
	}
	m, isObj := exactMembers(msg)
	if !isObj {
		// not one JSON object: a batch is split by the caller; anything
		// else is not JSON-RPC and is withheld
		return nil, false
	}
	w := &elicitWalker{ok: true}
	method, _ := jsonString(m["method"])
	switch {
	case method == "elicitation/create":
		w.request(m["params"])
	case m["method"] != nil && m["params"] != nil:
		// notifications/tasks (and 2025-11-25 notifications/tasks/status)
		// carry the full task: "The notification includes the full task
		// object, allowing clients to access the complete task state and
		// final results"
		w.payload(m["params"], 0)
	}
	if m["error"] != nil {
		if _, isObj := exactMembers(m["error"]); !isObj {
			return nil, false
		}
		w.rpcError(m["error"])
	}
	if m["result"] != nil {
		w.payload(m["result"], 0)
	}
	return w.found, w.ok
}

// maxElicitationDepth bounds how deep results nest inside results (a task
// whose result is a task's result …) before the walker gives up and fails
// closed.
const maxElicitationDepth = 8

// elicitWalker collects URL-mode elicitations from every member of a
// server→client message that can carry one. It is the one definition of
// "where an elicitation can be" for the gateway's guard, the session-era
// upstream's translation and the bridge.
type elicitWalker struct {
	found []URLElicitation
	ok    bool
}

// payload walks a result, or a task (Tasks extension DetailedTask,
// specification/draft/tasks.md: InputRequiredTask.inputRequests,
// CompletedTask.result — "The structure matches the result type of the
// original request" —, FailedTask.error — "The JSON-RPC error that caused
// the task to fail"), or a 2025-11-25 CreateTaskResult's task. A member
// that is not an object is not one of these and is left alone; an
// inputRequests that is not an object of objects cannot be read and fails
// closed.
func (w *elicitWalker) payload(raw json.RawMessage, depth int) {
	r, isObj := exactMembers(raw)
	if !isObj {
		return
	}
	if depth > maxElicitationDepth {
		w.ok = false
		return
	}
	if q := r["inputRequests"]; q != nil {
		reqs, isObj := exactMembers(q)
		if !isObj {
			w.ok = false
		}
		for _, q := range reqs {
			qm, isObj := exactMembers(q)
			if !isObj {
				w.ok = false
				continue
			}
			if qmethod, _ := jsonString(qm["method"]); qmethod == "elicitation/create" {
				w.request(qm["params"])
			}
		}
	}
	if e := r["error"]; e != nil {
		if _, isObj := exactMembers(e); isObj {
			w.rpcError(e)
		}
	}
	for _, k := range [...]string{"result", "task"} {
		if v := r[k]; v != nil {
			w.payload(v, depth+1)
		}
	}
}

// rpcError walks a JSON-RPC error object. The code is compared by value
// (CodeIs: -32042.0 is -32042 to JSON.parse); a code that is not a number
// cannot be read and fails closed.
func (w *elicitWalker) rpcError(raw json.RawMessage) {
	e, _ := exactMembers(raw)
	is, readable := CodeIs(e["code"], CodeURLElicitationRequired)
	if !readable {
		w.ok = false
		return
	}
	if !is {
		return
	}
	d, isObj := exactMembers(e["data"])
	if !isObj {
		w.ok = false
		return
	}
	var list []json.RawMessage
	if json.Unmarshal(d["elicitations"], &list) != nil {
		w.ok = false
		return
	}
	for _, x := range list {
		w.request(x)
	}
}

// request reads the params of one elicitation/create request.
func (w *elicitWalker) request(params json.RawMessage) {
	p, isObj := exactMembers(params)
	if !isObj {
		w.ok = false
		return
	}
	mode, isStr := jsonString(p["mode"])
	if p["mode"] != nil && !isStr {
		w.ok = false
		return
	}
	if mode != "url" {
		return // form mode (the default when mode is absent)
	}
	e := URLElicitation{}
	var s1, s2, s3 bool
	e.URL, s1 = jsonString(p["url"])
	e.Message, s2 = jsonString(p["message"])
	e.ElicitationID, s3 = jsonString(p["elicitationId"])
	if !s1 || p["message"] != nil && !s2 || p["elicitationId"] != nil && !s3 {
		w.ok = false
	}
	w.found = append(w.found, e)
}

// DeclaresURLElicitation reports whether client capabilities (the
// initialize capabilities, or 2026-07-28 _meta clientCapabilities) declare
// elicitation.url. "For backwards compatibility, an empty capabilities
// object is equivalent to declaring support for form mode only."
func DeclaresURLElicitation(caps json.RawMessage) bool {
	var c struct {
		Elicitation *struct {
			URL json.RawMessage `json:"url"`
		} `json:"elicitation"`
	}
	if json.Unmarshal(caps, &c) != nil || c.Elicitation == nil {
		return false
	}
	u := bytes.TrimSpace(c.Elicitation.URL)
	return len(u) > 0 && u[0] == '{'
}
