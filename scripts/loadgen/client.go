package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// driver sends the generator's requests. Every request is bounded by the
// http.Client timeout; streams use their own transport so that held
// connections never starve the request pool.
type driver struct {
	base        string // gateway URL, no path
	client      *http.Client
	streams     *http.Client
	rec         *recorder
	tokens      []string // one per subject, Bearer
	dpopTokens  []string // one per DPoP subject, bound to key
	stdioTokens []string // one per subject, for the stdio mount
	invalid     string
	key         *dpopKey
	next        atomic.Int64 // round-robin subject
	ids         atomic.Int64
	callsPer    int
}

func newDriver(base string, conc int, rec *recorder) *driver {
	t := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, IdleConnTimeout: 30 * time.Second}
	st := &http.Transport{MaxIdleConnsPerHost: 0, DisableKeepAlives: true}
	return &driver{base: base, rec: rec,
		client:  &http.Client{Transport: t, Timeout: 30 * time.Second},
		streams: &http.Client{Transport: st}}
}

func (d *driver) subject() int { return int(d.next.Add(1)) }

func (d *driver) id() string { return strconv.FormatInt(d.ids.Add(1), 10) }

// outcome is "" for the expected answer, else what went wrong (the HTTP
// status, or "rpc-error", or the transport failure's kind).
func (d *driver) post(ctx context.Context, path, auth, proof string, hdr map[string]string, body string, want int) (http.Header, string) {
	req, _ := http.NewRequestWithContext(ctx, "POST", d.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", auth)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != want {
		return resp.Header, strconv.Itoa(resp.StatusCode)
	}
	if want == 200 && bytes.Contains(b, []byte(`"error"`)) {
		return resp.Header, "rpc-error"
	}
	return resp.Header, ""
}

func transportError(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "Client.Timeout"), strings.Contains(s, "deadline"):
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "refused"
	case strings.Contains(s, "reset"), strings.Contains(s, "EOF"), strings.Contains(s, "broken pipe"):
		return "conn-closed"
	}
	return "transport"
}

// timed runs f, records its latency under kind, and returns its outcome.
func (d *driver) timed(kind string, f func() string) string {
	t := time.Now()
	o := f()
	d.rec.add(kind, time.Since(t), o)
	return o
}

const v2025 = "2025-11-25"

func statelessBody(id, method, params string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":{` + params +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
}

func statelessHeaders(method, name string) map[string]string {
	h := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
	if name != "" {
		h["Mcp-Name"] = name
	}
	return h
}

func (d *driver) stateless(ctx context.Context) string {
	tok := d.tokens[d.subject()%len(d.tokens)]
	_, o := d.post(ctx, "/mcp", "Bearer "+tok, "", statelessHeaders("tools/call", "echo"),
		statelessBody(d.id(), "tools/call", `"name":"echo","arguments":{"text":"hi"},`), 200)
	return o
}

func (d *driver) list(ctx context.Context) string {
	tok := d.tokens[d.subject()%len(d.tokens)]
	_, o := d.post(ctx, "/mcp", "Bearer "+tok, "", statelessHeaders("tools/list", ""), statelessBody(d.id(), "tools/list", ""), 200)
	return o
}

func (d *driver) dpopCall(ctx context.Context) string {
	tok := d.dpopTokens[d.subject()%len(d.dpopTokens)]
	proof, err := d.key.proof("POST", d.base+"/mcp", tok)
	if err != nil {
		return "proof"
	}
	_, o := d.post(ctx, "/mcp", "DPoP "+tok, proof, statelessHeaders("tools/call", "echo"),
		statelessBody(d.id(), "tools/call", `"name":"echo","arguments":{"text":"hi"},`), 200)
	return o
}

func (d *driver) invalidCall(ctx context.Context) string {
	_, o := d.post(ctx, "/mcp", "Bearer "+d.invalid, "", statelessHeaders("tools/call", "echo"),
		statelessBody(d.id(), "tools/call", `"name":"echo","arguments":{},`), 401)
	return o
}

// session is an initialized 2025-11-25 session of one subject.
type session struct {
	path, tok, sid string
}

func (s session) hdr() map[string]string {
	return map[string]string{"Mcp-Session-Id": s.sid, "MCP-Protocol-Version": v2025}
}

// open initializes a session on path (/mcp or /stdio/mcp) and sends
// notifications/initialized; each step is recorded under kind/step.
func (d *driver) open(ctx context.Context, kind, path string, subject int) (session, string) {
	toks := d.tokens
	if path != "/mcp" {
		toks = d.stdioTokens
	}
	s := session{path: path, tok: toks[subject%len(toks)]}
	var h http.Header
	o := d.timed(kind+"/initialize", func() string {
		var o string
		h, o = d.post(ctx, path, "Bearer "+s.tok, "", nil,
			`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"1"}}}`, 200)
		return o
	})
	if o != "" {
		return s, o
	}
	if s.sid = h.Get("Mcp-Session-Id"); s.sid == "" {
		return s, "no-session-id"
	}
	o = d.timed(kind+"/initialized", func() string {
		_, o := d.post(ctx, path, "Bearer "+s.tok, "", s.hdr(), `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202)
		return o
	})
	return s, o
}

func (d *driver) call(ctx context.Context, kind string, s session) string {
	return d.timed(kind+"/call", func() string {
		_, o := d.post(ctx, s.path, "Bearer "+s.tok, "", s.hdr(),
			`{"jsonrpc":"2.0","id":`+d.id()+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`, 200)
		return o
	})
}

func (d *driver) end(ctx context.Context, kind string, s session) string {
	return d.timed(kind+"/delete", func() string {
		req, _ := http.NewRequestWithContext(ctx, "DELETE", d.base+s.path, nil)
		req.Header.Set("Authorization", "Bearer "+s.tok)
		for k, v := range s.hdr() {
			req.Header.Set(k, v)
		}
		resp, err := d.client.Do(req)
		if err != nil {
			return transportError(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return strconv.Itoa(resp.StatusCode)
		}
		return ""
	})
}

// sessionOp is the "session" kind: initialize, calls, DELETE.
func (d *driver) sessionOp(ctx context.Context) string {
	s, o := d.open(ctx, kindSession, "/mcp", d.subject())
	if o != "" {
		return o
	}
	for range d.callsPer {
		if o := d.call(ctx, kindSession, s); o != "" {
			return o
		}
	}
	return d.end(ctx, kindSession, s)
}

// stream is an open idle GET stream; close ends it.
type stream struct {
	close func()
}

// openStream opens a GET stream on s and waits for its first event line.
func (d *driver) openStream(s session) (stream, string) {
	ctx, cancel := context.WithCancel(context.Background())
	o := d.timed(kindStream+"/open", func() string {
		req, _ := http.NewRequestWithContext(ctx, "GET", d.base+s.path, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+s.tok)
		for k, v := range s.hdr() {
			req.Header.Set(k, v)
		}
		resp, err := d.streams.Do(req)
		if err != nil {
			return transportError(err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			return strconv.Itoa(resp.StatusCode)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "id:") {
			resp.Body.Close()
			return fmt.Sprintf("first-line:%q", strings.TrimSpace(line))
		}
		go func() { <-ctx.Done(); resp.Body.Close() }()
		return ""
	})
	if o != "" {
		cancel()
	}
	return stream{close: cancel}, o
}
