package gateway

import (
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// writeJSON serves a public JSON document (metadata).
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// recorder wraps the ResponseWriter of a proxied request to learn the status
// and the session id the upstream minted, without getting in the way of
// streaming: Flush and Unwrap reach the real writer.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	onHeader    func(h http.Header, status int)
	override    *override // set by onHeader: the gateway answers instead (sessionflow.go)
	// unread, while set, runs before the header goes out: the request body
	// has not been read (see unreadGuard).
	unread func(h http.Header)
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.wroteHeader = true
		r.status = code
		if r.unread != nil {
			r.unread(r.ResponseWriter.Header())
		}
		if r.onHeader != nil {
			r.onHeader(r.ResponseWriter.Header(), code)
		}
		// every answer of an MCP mount, whichever upstream wrote it: never
		// a document on the gateway's origin
		mcp.ConfineAnswer(r.ResponseWriter.Header())
		if r.override != nil {
			r.writeOverride()
			return
		}
	}
	if r.override != nil {
		return
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if r.override != nil {
		return len(b), nil
	}
	return r.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client; SSE events go out one by one.
func (r *recorder) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusCode() int {
	if !r.wroteHeader {
		return http.StatusOK
	}
	return r.status
}
