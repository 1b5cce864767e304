package upstream

import (
	"encoding/json"
	"net/http"
)

// Handler is an upstream as the gateway reaches it: every request it
// forwards comes with the Request that says whom it is for and how its
// responses must be filtered. It replaces http.Handler so that the
// gateway's contract with its upstreams is in the signature: a handler
// cannot be reached without a Request, and a Request cannot be built
// without a response filter.
type Handler interface {
	// ServeMCP serves r, whose body the gateway has read and checked
	// (r.Body holds the same bytes), for req. Responses reach w only
	// through req.Filter().
	ServeMCP(w http.ResponseWriter, r *http.Request, req *Request)
}

// HandlerFunc is a function as a Handler (in-memory upstreams of tests
// and benchmarks).
type HandlerFunc func(w http.ResponseWriter, r *http.Request, req *Request)

// ServeMCP calls f.
func (f HandlerFunc) ServeMCP(w http.ResponseWriter, r *http.Request, req *Request) { f(w, r, req) }

// Request is the gateway's side of the contract for one forwarded request.
// Build it with NewRequest: a Request made any other way has no filter,
// and its Filter method panics rather than let responses through
// unfiltered.
type Request struct {
	// Caller is who the request is for: an upstream session it creates
	// belongs to Caller.Owner, and Caller.Header goes upstream with it.
	Caller Caller
	// ID is the JSON-RPC id of the (first) request in the body, for error
	// answers; nil for a body of notifications or responses, and for GET
	// and DELETE.
	ID json.RawMessage
	// Detach, when set, lets a GET stream outlive the handler (see
	// Detacher); nil keeps every stream in its handler.
	Detach Detacher

	filter Filter
	built  bool // by NewRequest: a zero Request has no filter to trust
}

// ResponseFilter is the filter argument of NewRequest: Filtered(f) or
// NoFilter. A struct, so that nil is not a ResponseFilter: leaving the
// filter out, or passing nil, does not compile. Its zero value is neither
// choice, and NewRequest refuses it.
type ResponseFilter struct {
	f    Filter
	none bool
}

// Filtered is the choice to pass every server→client message of a request
// through f, which must not be nil.
func Filtered(f Filter) ResponseFilter { return ResponseFilter{f: f} }

// NoFilter is the explicit choice to pass a request's responses through
// unchanged (a DELETE, a message to a legacy session whose answers come on
// its filtered stream, a cancellation whose answer is discarded).
var NoFilter = ResponseFilter{none: true}

// NewRequest returns the Request of a forward for caller, its responses
// going through filter. It panics when filter is neither Filtered(f) with
// a non-nil f nor NoFilter: a request without a filter is a programming
// error, and failing there keeps every list the policy hides from reaching
// the client.
func NewRequest(caller Caller, filter ResponseFilter) *Request {
	if filter.f == nil && !filter.none {
		panic("upstream.NewRequest: no response filter: pass upstream.Filtered(f) with a non-nil f, or upstream.NoFilter")
	}
	return &Request{Caller: caller, filter: filter.f, built: true}
}

// Filter returns the filter every server→client message of the request
// must pass through; nil when the request was built with NoFilter. It
// panics on a Request that NewRequest did not build.
func (r *Request) Filter() Filter {
	if !r.built {
		panic("upstream.Request used without NewRequest: its response filter is unset")
	}
	return r.filter
}
