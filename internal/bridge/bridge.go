// Package bridge is `mcpgate connect`: a stdio MCP server (newline-delimited
// JSON-RPC on stdin/stdout) that forwards to a remote MCP server over
// Streamable HTTP, with credentials applied by an mcpclient.Auth. Every
// request read from stdin gets exactly one answer on stdout, whatever
// happens remotely. A 2025-era stdio client can use a 2026-07-28-only
// server: the bridge answers initialize itself from server/discover and
// adds the per-request _meta the modern era needs.
package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// Options configure a bridge.
type Options struct {
	Transport *mcpclient.Transport
	Stdin     io.Reader
	Stdout    io.Writer
	Log       *slog.Logger
	// ProtocolVersion forces the remote revision ("" negotiates).
	ProtocolVersion string
	// Mode is the remote transport: auto (Streamable HTTP, falling back
	// to HTTP+SSE on 400/404/405 as the spec says), streamable, or sse.
	Mode string
	// ShutdownGrace bounds the wait for in-flight requests after stdin
	// closes (default 1.5 s; the session is deleted after it).
	ShutdownGrace time.Duration
	// MaxLine bounds one stdin message (default 16 MiB).
	MaxLine int
	// Extensions are the extensions the bridge itself implements toward
	// the server (identifier → settings object), declared in the client
	// capabilities it sends in place of the authorization extensions its
	// stdio client names (extensions.go). nil declares none.
	Extensions map[string]any
}

// Bridge pumps messages between stdio and the remote server.
type Bridge struct {
	o   Options
	t   *mcpclient.Transport
	log *slog.Logger

	// outMu guards out: one message per line, whole.
	outMu sync.Mutex
	out   *bufio.Writer

	// mu guards inflight, cancelled, bridging, clientInfo, clientCaps,
	// initRaw, listening, initDone, runCtx and inputWait: the requests in
	// flight, the stdio client's handshake and the input requests asked.
	mu        sync.Mutex
	inflight  map[string]context.CancelFunc // request id -> cancel
	cancelled map[string]bool
	// bridging: the stdio client speaks the session era, the server only
	// the modern one; the bridge adds _meta to every request.
	bridging   bool
	clientInfo json.RawMessage
	clientCaps json.RawMessage
	initRaw    []byte // the client's initialize, replayed on session expiry
	listening  bool
	initDone   chan struct{} // closed when the client's initialize completed
	runCtx     context.Context
	// inputWait: answers of the stdio client to input requests the bridge
	// asked on a modern server's behalf (mrtr.go), by request id.
	inputWait map[string]chan mcp.Envelope

	wg       sync.WaitGroup // the background requests, for shutdown
	inputSeq atomic.Int64   // numbers input requests and retry rounds
}

// New builds a bridge.
func New(o Options) *Bridge {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 1500 * time.Millisecond
	}
	if o.MaxLine == 0 {
		o.MaxLine = mcp.MaxMessageBytes
	}
	b := &Bridge{o: o, t: o.Transport, log: o.Log, out: bufio.NewWriter(o.Stdout),
		inflight: map[string]context.CancelFunc{}, cancelled: map[string]bool{}, inputWait: map[string]chan mcp.Envelope{}}
	b.t.OnSessionExpired = b.reinitialize
	return b
}

// write sends one message to stdout on one line. Messages come from the
// transport, which delivers valid JSON only; one that spans lines is
// compacted.
func (b *Bridge) write(msg []byte) {
	if bytes.ContainsAny(msg, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, msg); err != nil {
			b.log.Warn("dropping a malformed message from the server", "err", err)
			return
		}
		msg = buf.Bytes()
	}
	b.outMu.Lock()
	defer b.outMu.Unlock()
	_, _ = b.out.Write(msg)
	_ = b.out.WriteByte('\n')
	_ = b.out.Flush()
}

func (b *Bridge) writeError(id json.RawMessage, code int, msg string) {
	b.write(mcp.ErrorResponse(id, code, msg, nil))
}

// Run pumps until stdin ends or ctx is cancelled, then shuts down: it
// waits ShutdownGrace for in-flight requests, cancels the rest, and
// deletes the remote session.
func (b *Bridge) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	b.runCtx = ctx
	b.mu.Unlock()
	// the reader handles each line itself (one goroutine hop less per
	// message); handle never blocks, requests run in their own goroutines
	var busy atomic.Bool
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(b.o.Stdin, 64<<10)
		for {
			line, tooLong, err := readLine(r, b.o.MaxLine)
			switch {
			case ctx.Err() != nil:
			case tooLong:
				b.writeError(nil, mcp.CodeInvalidRequest, fmt.Sprintf("message larger than %d bytes", b.o.MaxLine))
			case len(bytes.TrimSpace(line)) > 0:
				busy.Store(true)
				b.handle(ctx, line)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var err error
	// an idle bridge gives its heap back to the OS and drops the binary's
	// clean pages from its resident set: AI clients keep one bridge per
	// server running all day
	idle := time.NewTicker(2 * time.Second)
	defer idle.Stop()
loop:
	for {
		select {
		case <-idle.C:
			if !busy.Swap(false) {
				continue
			}
			b.mu.Lock()
			n := len(b.inflight)
			b.mu.Unlock()
			if n == 0 {
				debug.FreeOSMemory()
				dropCodePages()
			}
		case e := <-readErr:
			if !errors.Is(e, io.EOF) {
				err = e
			}
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	b.shutdown()
	cancel()
	return err
}

// readLine reads one line of at most max bytes; a longer one is skipped
// and reported as tooLong.
func readLine(r *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			return nil, true, err
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, false, err
		}
	}
}

func (b *Bridge) shutdown() {
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.o.ShutdownGrace):
		b.mu.Lock()
		for _, c := range b.inflight {
			c()
		}
		b.mu.Unlock()
		select {
		case <-done:
		case <-time.After(300 * time.Millisecond):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	b.t.Delete(ctx)
}

// handle routes one stdin message.
func (b *Bridge) handle(ctx context.Context, line []byte) {
	env, err := mcp.PeekOne(bytes.TrimSpace(line))
	if errors.Is(err, mcp.ErrInvalidParams) {
		// a request without a string routing key (tools/call without
		// params.name, …): the gateway would refuse it too
		b.writeError(mcp.ErrorID(err), mcp.CodeInvalidParams, "invalid params: "+err.Error())
		return
	}
	if err != nil {
		b.writeError(nil, mcp.CodeParseError, "parse error: "+err.Error())
		return
	}
	if env.Method == "initialize" && env.IsRequest() {
		b.mu.Lock()
		b.initDone = make(chan struct{})
		b.mu.Unlock()
	}
	switch {
	case env.IsRequest():
		b.request(ctx, env)
	case env.IsNotification():
		b.notification(ctx, env)
	case env.IsResponse():
		b.mu.Lock()
		ch := b.inputWait[string(bytes.TrimSpace(env.ID))]
		b.mu.Unlock()
		if ch != nil {
			// the answer to an input request of a modern server (mrtr.go)
			select {
			case ch <- env:
			default:
			}
			return
		}
		// the client's answer to a server request (sampling, roots, …)
		b.async(func() {
			if err := b.t.Post(ctx, env.Raw, func([]byte) {}); err != nil {
				b.log.Warn("posting a response to the server failed", "err", err)
			}
		})
	default:
		b.writeError(env.ID, mcp.CodeInvalidRequest, "not a JSON-RPC request, notification or response")
	}
}

// async runs f in the background; messages that follow an initialize
// wait until the handshake completed (the server would refuse them).
func (b *Bridge) async(f func()) {
	b.mu.Lock()
	gate := b.initDone
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if gate != nil {
			<-gate
		}
		f()
	}()
}

func (b *Bridge) notification(ctx context.Context, env mcp.Envelope) {
	b.mu.Lock()
	bridging := b.bridging
	b.mu.Unlock()
	era, _ := b.t.Protocol()
	switch env.Method {
	case "notifications/initialized":
		if bridging {
			return // the modern server has no handshake to complete
		}
	case "notifications/cancelled":
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		_ = json.Unmarshal(env.Params, &p)
		key := string(bytes.TrimSpace(p.RequestID))
		b.mu.Lock()
		cancel := b.inflight[key]
		b.cancelled[key] = true
		b.mu.Unlock()
		if era == mcp.EraStateless {
			// 2026-07-28: closing the stream cancels; the notification is
			// for stdio only
			if cancel != nil {
				cancel()
			}
			return
		}
	}
	raw := env.Raw
	if bridging {
		raw = b.withMeta(env.Raw)
	}
	b.async(func() {
		if err := b.t.Post(ctx, raw, func(m []byte) { b.write(m) }); err != nil {
			b.log.Warn("forwarding a notification failed", "method", env.Method, "err", err)
		}
	})
}
