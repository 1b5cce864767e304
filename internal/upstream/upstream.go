// Package upstream holds what the gateway needs to reach protected MCP
// servers: the message-level Conn shared by every upstream kind, and the
// per-request response filter. Its subpackages implement the kinds:
//
//   - httpproxy: a streaming reverse proxy to a Streamable HTTP upstream;
//   - session: a Streamable HTTP server (sessions, SSE, resumption) in front of
//     any Conn, used for stdio and legacy HTTP+SSE upstreams;
//   - stdio: one child process per session, spoken to over newline-delimited JSON-RPC;
//   - legacy: the 2024-11-05 HTTP+SSE transport, as a front for old clients and
//     as a client Conn to old servers.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
)

// Conn is a message-level connection to one MCP server session. Messages are
// single JSON-RPC messages (no batches), without trailing newlines.
type Conn interface {
	// Send delivers one client→server message (request, notification or
	// response). It returns an error when the connection is gone.
	Send(ctx context.Context, msg []byte) error
	// Recv returns the next server→client message. It returns io.EOF (or
	// another error) once the connection has ended; Recv is called from one
	// goroutine at a time.
	Recv(ctx context.Context) ([]byte, error)
	// Close ends the session (for stdio, the MCP shutdown sequence). It is
	// idempotent and safe to call concurrently with Send and Recv.
	Close() error
}

// SessionInfo describes who a new upstream session is for.
type SessionInfo struct {
	// Subject is the authenticated caller; sessions are never shared
	// between subjects.
	Subject string
	// Header holds headers to add to upstream HTTP requests (identity
	// headers, the gateway's upstream credential). Never the client's token.
	Header http.Header
}

// Dialer opens a new upstream session.
type Dialer func(ctx context.Context, info SessionInfo) (Conn, error)

// Filter rewrites one server→client JSON-RPC message before it reaches the
// client (the gateway filters tools/list and friends). It returns the message
// to send; returning msg unchanged is the identity. It must not block.
type Filter func(msg []byte) []byte

// ApplyBody runs f on each message of a JSON body: a single message, or
// each element of a batch. A batch that cannot be split is handed to f
// whole, which fails closed on what it cannot read (the gateway's filters
// withhold it) instead of passing it unread.
func (f Filter) ApplyBody(b []byte) []byte {
	if f == nil {
		return b
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '[' {
		return f(b)
	}
	var msgs []json.RawMessage
	if json.Unmarshal(t, &msgs) != nil || len(msgs) == 0 {
		return f(b)
	}
	var out bytes.Buffer
	out.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(f(m))
	}
	out.WriteByte(']')
	return out.Bytes()
}

type filterKey struct{}

// WithFilter returns ctx carrying f for the request being proxied.
func WithFilter(ctx context.Context, f Filter) context.Context {
	return context.WithValue(ctx, filterKey{}, f)
}

// FilterFrom returns the request's filter, or nil.
func FilterFrom(ctx context.Context) Filter {
	f, _ := ctx.Value(filterKey{}).(Filter)
	return f
}

// Apply runs f on msg when f is not nil.
func (f Filter) Apply(msg []byte) []byte {
	if f == nil {
		return msg
	}
	return f(msg)
}

type infoKey struct{}

// WithSessionInfo returns ctx carrying the caller's session info, which
// session-creating upstreams pass to their Dialer.
func WithSessionInfo(ctx context.Context, info SessionInfo) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// SessionInfoFrom returns the request's session info.
func SessionInfoFrom(ctx context.Context) SessionInfo {
	info, _ := ctx.Value(infoKey{}).(SessionInfo)
	return info
}

type idKey struct{}

// WithRequestID returns ctx carrying the JSON-RPC id of the request being
// proxied, so upstream packages can answer errors without parsing the body
// again.
func WithRequestID(ctx context.Context, id []byte) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// RequestIDFrom returns the id set by WithRequestID; ok is false when none was set.
func RequestIDFrom(ctx context.Context) (id []byte, ok bool) {
	id, ok = ctx.Value(idKey{}).([]byte)
	return id, ok
}

// Detacher lets a proxy continue a long-lived GET stream after its handler
// has returned (on a hijacked connection), so an idle stream does not keep
// the handler's deep stack and the server's buffers alive. It returns the
// stream's context, which ends when the gateway shuts down, and done, which
// the stream calls exactly once when it ends.
type Detacher func() (ctx context.Context, done func())

type detachKey struct{}

// WithDetacher returns ctx carrying d.
func WithDetacher(ctx context.Context, d Detacher) context.Context {
	return context.WithValue(ctx, detachKey{}, d)
}

// DetacherFrom returns the request's Detacher, or nil.
func DetacherFrom(ctx context.Context) Detacher {
	d, _ := ctx.Value(detachKey{}).(Detacher)
	return d
}
