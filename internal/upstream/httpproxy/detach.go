package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// streamDetached relays an SSE body on the hijacked client connection from
// a goroutine of its own, and returns at once. Only HTTP/1.x connections
// can be hijacked; it reports false (having written nothing) otherwise.
// The stream ends when either side closes, when the upstream body ends,
// or when ctx (the gateway's shutdown) ends.
func (p *Proxy) streamDetached(w http.ResponseWriter, resp *http.Response, filter upstream.Filter, detach upstream.Detacher) bool {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	ctx, done := detach()
	h := w.Header().Clone()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	bw := bufio.NewWriterSize(conn, 512)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		conn.Close()
		resp.Body.Close()
		done()
		return true
	}
	_ = brw // the server's buffers are dropped with the handler
	if p.o.Streams != nil {
		p.o.Streams.Add(1)
	}
	go p.relayDetached(ctx, conn, bw, resp, filter, done)
	return true
}

func (p *Proxy) relayDetached(ctx context.Context, conn net.Conn, bw *bufio.Writer, resp *http.Response, filter upstream.Filter, done func()) {
	ctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(ctx, func() {
		if upstream.ShuttingDown(ctx) {
			// The relay loop, the connection's only writer, sends the
			// retry field once the body read fails; the deadline keeps
			// a client that reads nothing from holding it.
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			resp.Body.Close()
			return
		}
		conn.Close()
		resp.Body.Close()
	})
	defer func() {
		stopClose()
		cancel()
		conn.Close()
		resp.Body.Close()
		if p.o.Streams != nil {
			p.o.Streams.Add(-1)
		}
		done()
	}()
	// The client sends nothing on a stream: a read returns when it leaves.
	go func() {
		var b [1]byte
		_, _ = conn.Read(b[:])
		cancel()
	}()
	r := mcp.NewSSEReader(resp.Body, int(p.o.MaxResponseBytes))
	cw := &chunkWriter{w: bw}
	for {
		ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				p.o.Logger.Debug("upstream stream ended", "err", err)
			}
			upstream.WriteReconnect(ctx, cw)
			_, _ = bw.WriteString("0\r\n\r\n")
			_ = bw.Flush()
			return
		}
		if filter != nil && len(ev.Data) > 0 {
			ev.Data = filter.Apply(ev.Data)
		}
		if err := mcp.WriteEvent(cw, ev); err != nil || bw.Flush() != nil {
			return
		}
	}
}

// chunkWriter frames each write as one HTTP/1.1 chunk.
type chunkWriter struct{ w *bufio.Writer }

func (c *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.w.WriteString(strconv.FormatInt(int64(len(p)), 16))
	c.w.WriteString("\r\n")
	c.w.Write(p)
	_, err := c.w.WriteString("\r\n")
	return len(p), err
}
