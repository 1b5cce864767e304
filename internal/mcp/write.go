package mcp

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// MaxMessageBytes bounds one JSON-RPC message (or batch) anywhere mcpgate
// reads one: an HTTP request or response body, an SSE event, a stdio line.
// 16 MiB holds any real tool result; a peer that sends more is refused
// rather than buffered without end.
const MaxMessageBytes = 16 << 20

// WriteError is the one JSON-RPC error writer for HTTP answers: the status
// says what class of failure it is, and the body is always a JSON-RPC error
// response carrying the request's id (null when it is unknown), so a client
// waiting on that id is never left hanging. It is never cached.
func WriteError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string, data any) {
	WriteJSON(w, status, ErrorResponse(id, code, msg, data))
}

// WriteJSON writes one JSON-RPC message (or JSON document) as the whole
// answer, with its length and Cache-Control: no-store.
func WriteJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
