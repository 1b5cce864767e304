package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// request runs one stdio request in the background and makes sure it gets
// exactly one answer: the server's, or an error saying what failed. A
// cancelled request gets none (the client gave up on it).
func (b *Bridge) request(ctx context.Context, env mcp.Envelope) {
	key := string(bytes.TrimSpace(env.ID))
	rctx, cancel := context.WithCancel(ctx)
	b.mu.Lock()
	if _, dup := b.inflight[key]; dup {
		b.mu.Unlock()
		cancel()
		b.writeError(env.ID, mcp.CodeInvalidRequest, "a request with this id is already in flight")
		return
	}
	b.inflight[key] = cancel
	var gate chan struct{}
	if env.Method == "initialize" {
		gate = b.initDone
	}
	b.mu.Unlock()
	b.run(gate, func() {
		defer func() {
			cancel()
			b.mu.Lock()
			delete(b.inflight, key)
			delete(b.cancelled, key)
			b.mu.Unlock()
		}()
		var err error
		if env.Method == "initialize" {
			err = b.initialize(rctx, env, b.write)
		} else {
			err = b.newExchange(env, key).run(rctx)
		}
		b.finish(env, key, err)
	})
}

// run is async for a request, except for initialize (gate set): that one
// runs at once and opens the gate the messages behind it wait at.
func (b *Bridge) run(gate chan struct{}, f func()) {
	if gate == nil {
		b.async(f)
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(gate)
		f()
	}()
}

// finish answers a request the transport could not complete (it returns
// nil for a request only after delivering its response).
func (b *Bridge) finish(env mcp.Envelope, key string, err error) {
	b.mu.Lock()
	wasCancelled := b.cancelled[key]
	b.mu.Unlock()
	if err == nil || wasCancelled {
		return
	}
	code, msg := describe(err, mcp.ErrorEra(env.MetaVersion))
	b.log.Warn("request failed", "method", env.Method, "err", err)
	b.writeError(env.ID, code, msg)
}

// exchange is one stdio request's trip to the server, in named steps:
//
//   - send: post the request (with the modern _meta when bridging eras);
//   - deliver: each message of the answer, in order — an
//     InputRequiredResult is held for the MRTR rounds, a header mismatch
//     for the retry, a tools/list result teaches the header cache, a retry
//     round's answer gets the client's id back; the rest goes to stdout;
//   - retryHeaderMismatch: a -32020 answer means the x-mcp-header cache is
//     stale: refresh it and send once more (2026-07-28, SHOULD);
//   - inputRounds: Multi Round-Trip Requests for a session-era client
//     (mrtr.go): ask the client, retry with inputResponses and the
//     requestState under a new id.
//
// Its fields are used by one goroutine: the transport calls deliver on
// the goroutine that posts.
type exchange struct {
	b   *Bridge
	env mcp.Envelope
	key string // the client's id, trimmed
	era mcp.Era
	// bridging: a session-era client of a 2026-07-28 server
	bridging bool

	raw    []byte // the message as sent now (_meta added; a retry round's id and input)
	wireID string // the id of raw: key, or mcpgate-retry-N in a retry round
	// input: the InputRequiredResult of the last send (bridging only)
	input *inputRequired
	// mismatch: the header-mismatch answer held for the retry (nil once retried)
	mismatch []byte
	retried  bool
	// consented: URL elicitations to report complete (elicit.go)
	consented []string
}

func (b *Bridge) newExchange(env mcp.Envelope, key string) *exchange {
	b.mu.Lock()
	bridging := b.bridging
	b.mu.Unlock()
	era, _ := b.t.Protocol()
	x := &exchange{b: b, env: env, key: key, era: era, bridging: bridging && era == mcp.EraStateless, raw: env.Raw, wireID: key}
	if bridging {
		x.raw = b.withMeta(env.Raw)
	}
	return x
}

// run sends the request and completes it.
func (x *exchange) run(ctx context.Context) error {
	if err := x.send(ctx); err != nil {
		return err
	}
	if err := x.retryHeaderMismatch(ctx); err != nil {
		return err
	}
	return x.inputRounds(ctx)
}

// send posts x.raw; the first post of an unchanged message reuses the
// envelope's parse.
func (x *exchange) send(ctx context.Context) error {
	if bytes.Equal(x.raw, x.env.Raw) {
		return x.b.t.PostParsed(ctx, x.raw, x.env.ID, x.env.Method, x.env.Params, x.deliver)
	}
	return x.b.t.Post(ctx, x.raw, x.deliver)
}

// deliver handles one message of the server's answer.
func (x *exchange) deliver(m []byte) {
	if x.bridging {
		if ir, ok := asInputRequired(m, x.wireID); ok {
			x.input = ir
			return
		}
	}
	if x.env.Method == "tools/call" && x.era == mcp.EraStateless && !x.retried && isHeaderMismatch(m, x.wireID) {
		x.mismatch = m
		return
	}
	if x.env.Method == "tools/list" {
		m = x.b.learnTools(m, x.wireID, x.era == mcp.EraStateless)
	}
	if x.bridging {
		m = withoutResultType(m, x.wireID)
	}
	x.b.write(x.clientID(m))
}

// withoutResultType drops resultType "complete" from the answer to
// request key for a session-era client: its revision has no such member,
// and its SDKs refuse unknown members on some results (the empty result
// of ping, logging/setLevel, resources/subscribe). 2026-07-28 servers
// "MUST include this field"; "when a client receives a result from a
// server implementing an earlier protocol version (which does not include
// resultType), the client MUST treat the absent field as complete".
func withoutResultType(m []byte, key string) []byte {
	env, err := mcp.PeekOne(m)
	if err != nil || !env.IsResponse() || string(env.ID) != key || env.Result == nil {
		return m
	}
	var r map[string]json.RawMessage
	if json.Unmarshal(env.Result, &r) != nil || string(r["resultType"]) != `"complete"` {
		return m
	}
	delete(r, "resultType")
	res, err := json.Marshal(r)
	if err != nil {
		return m
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(m, &msg) != nil {
		return m
	}
	msg["result"] = res
	out, err := json.Marshal(msg)
	if err != nil {
		return m
	}
	return out
}

// clientID gives a retry round's response the client's id back; a
// completed result ends the URL elicitations the client consented to.
func (x *exchange) clientID(m []byte) []byte {
	if x.wireID == x.key {
		return m
	}
	e, err := mcp.PeekOne(m)
	if err != nil || !e.IsResponse() || string(e.ID) != x.wireID {
		return m
	}
	if e.Result != nil {
		x.b.completeElicitations(x.consented)
	}
	return mcp.WithID(m, x.env.ID)
}

// retryHeaderMismatch refreshes the header cache and sends once more
// after a header mismatch; when the retry cannot be sent, the client gets
// the mismatch answer.
func (x *exchange) retryHeaderMismatch(ctx context.Context) error {
	if x.mismatch == nil {
		return nil
	}
	held := x.mismatch
	x.mismatch, x.retried = nil, true
	x.b.refreshTools(ctx)
	if err := x.send(ctx); err != nil {
		x.b.write(x.clientID(held))
	}
	return nil
}

// inputRounds answers the server's input requests, at most maxInputRounds
// times.
func (x *exchange) inputRounds(ctx context.Context) error {
	for round := 0; x.input != nil; round++ {
		if round == maxInputRounds {
			return fmt.Errorf("the server still asked for input after %d rounds", maxInputRounds)
		}
		ir := x.input
		x.input = nil
		responses, err := x.b.askClient(ctx, ir)
		if err != nil {
			return err
		}
		x.consented = append(x.consented, ir.completed...)
		x.wireID = strconv.Quote(fmt.Sprintf("mcpgate-retry-%d", x.b.inputSeq.Add(1)))
		if x.raw, err = withInput(x.raw, json.RawMessage(x.wireID), responses, ir.State); err != nil {
			return err
		}
		if err := x.send(ctx); err != nil {
			return err
		}
		if err := x.retryHeaderMismatch(ctx); err != nil {
			return err
		}
	}
	return nil
}

// learnTools caches the x-mcp-header annotations of a tools/list answer
// and, for a modern server, drops the tools whose annotations are invalid.
func (b *Bridge) learnTools(m []byte, key string, modern bool) []byte {
	var r map[string]json.RawMessage
	if json.Unmarshal(m, &r) != nil || r["result"] == nil || string(bytes.TrimSpace(r["id"])) != key {
		return m
	}
	filtered, rejected := b.t.LearnTools(r["result"])
	if !modern || len(rejected) == 0 {
		return m
	}
	for _, why := range rejected {
		b.log.Warn("dropping a tool with an invalid x-mcp-header annotation", "tool", why)
	}
	r["result"] = filtered
	out, err := json.Marshal(r)
	if err != nil {
		return m
	}
	return out
}

func isHeaderMismatch(m []byte, key string) bool {
	var r struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code mcp.Int `json:"code"` // by value, as JSON.parse reads it
		} `json:"error"`
	}
	return json.Unmarshal(m, &r) == nil && r.Error != nil && r.Error.Code == mcp.CodeHeaderMismatch && string(bytes.TrimSpace(r.ID)) == key
}

// refreshTools re-reads tools/list for the header cache.
func (b *Bridge) refreshTools(ctx context.Context) {
	_, v := b.t.Protocol()
	msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "mcpgate-tools-refresh", "method": "tools/list",
		"params": map[string]any{"_meta": b.meta(v)}})
	_ = b.t.Post(ctx, msg, func(m []byte) { b.learnTools(m, `"mcpgate-tools-refresh"`, true) })
}

// describe turns a failure into a JSON-RPC error code for a stdio client
// of era (mcp.CodeFor: the bridge answers its client as a server does) and
// a message that says what happened and what to do.
func describe(err error, era mcp.Era) (int, string) {
	var re *mcpclient.RPCError
	var he *mcpclient.HTTPError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.Code, re.Message
	case errors.Is(err, mcpclient.ErrLoginRequired):
		return mcp.CodeFor(era, mcp.CodeUnauthorized), "authentication needed: " + err.Error()
	case errors.As(err, &he) && he.Status == 401:
		return mcp.CodeFor(era, mcp.CodeUnauthorized), "the server refused the credential: " + he.Error() + "; run mcpgate login (or check --scope)"
	case errors.As(err, &he) && he.Status == 403:
		return mcp.CodeFor(era, mcp.CodeForbidden), "the server refused the credential: " + he.Error() + "; run mcpgate login (or check --scope)"
	case errors.As(err, &he) && he.Status >= 500:
		return mcp.CodeUpstream, "the remote MCP server failed: " + he.Error()
	case errors.As(err, &he):
		return mcp.CodeUpstream, "the remote MCP server refused the request: " + he.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return mcp.CodeUpstreamTimeout, "the remote MCP server did not answer in time: " + err.Error()
	case errors.Is(err, context.Canceled):
		return mcp.CodeUnavailable, "the request was cancelled (the bridge is shutting down)"
	}
	return mcp.CodeUpstream, "cannot reach the remote MCP server: " + err.Error()
}
