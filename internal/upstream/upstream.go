// Package upstream holds what the gateway needs to reach protected MCP
// servers: the message-level Conn shared by every upstream kind, and the
// gateway's contract with its upstreams — a Handler is served each request
// with a Request naming the caller, the JSON-RPC id and the response filter
// (request.go). Its subpackages implement the kinds:
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

// Caller is who a forwarded request, and any upstream session it creates,
// is for.
type Caller struct {
	// Owner is the key everything per caller is bound to: the token's
	// issuer and subject (subjects are unique per issuer only). Upstream
	// sessions, connection budgets and parked requests are never shared
	// between owners.
	Owner string
	// Client is the OAuth client the caller calls through. Connections
	// that outlive a request (task hosts) are shared only by requests of
	// the same Owner, Client and Header (session.hostKey).
	Client string
	// Header holds headers to add to upstream HTTP requests (identity
	// headers, the gateway's upstream credential). Never the client's token.
	Header http.Header
	// Env holds "NAME=value" entries a stdio child started for this
	// caller gets on top of its configured environment (the caller's own
	// per-user credential, upstream_auth.child_env). Secret: never logged,
	// never in argv.
	Env []string
}

// Dialer opens a new upstream session.
type Dialer func(ctx context.Context, caller Caller) (Conn, error)

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

// Apply runs f on msg when f is not nil.
func (f Filter) Apply(msg []byte) []byte {
	if f == nil {
		return msg
	}
	return f(msg)
}

// Detacher lets a proxy continue a long-lived GET stream after its handler
// has returned (on a hijacked connection), so an idle stream does not keep
// the handler's deep stack and the server's buffers alive. It returns the
// stream's context, which ends when the gateway shuts down, and done, which
// the stream calls exactly once when it ends.
type Detacher func() (ctx context.Context, done func())
