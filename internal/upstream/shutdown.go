package upstream

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// ErrShutdown is the cause of a stream's context when the gateway ends the
// stream because it is shutting down (the final phase of a drain), as
// opposed to the client leaving. A stream that sees it tells the client to
// reconnect — to another replica — before it ends (ShuttingDown).
var ErrShutdown = errors.New("the gateway is shutting down")

// ReconnectDelay is the SSE retry value a stream ended by shutdown carries.
// MCP 2025-11-25, Streamable HTTP: a server that closes the connection
// before terminating the stream "SHOULD send an SSE event with a standard
// retry field before closing the connection. The client MUST respect the
// retry field, waiting the given number of milliseconds before attempting
// to reconnect." One second lets the load balancer route the reconnect to
// a replica that is still ready.
const ReconnectDelay = time.Second

// ShuttingDown reports whether ctx ended because the gateway is shutting
// down (its cause is ErrShutdown).
func ShuttingDown(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrShutdown)
}

// WriteReconnect ends a stream that shutdown ended: when ctx ended with
// ErrShutdown it writes an SSE event holding only the retry field
// (ReconnectDelay). The client reconnects — a 2025-11-25 client resumes
// with Last-Event-ID where the upstream or the gateway keeps the stream; a
// 2026-07-28 client, whose streams are not resumable, sends its
// subscriptions/listen again. It reports whether it wrote the event.
func WriteReconnect(ctx context.Context, w io.Writer) bool {
	if !ShuttingDown(ctx) {
		return false
	}
	return mcp.WriteEvent(w, mcp.Event{Retry: int(ReconnectDelay / time.Millisecond)}) == nil
}
