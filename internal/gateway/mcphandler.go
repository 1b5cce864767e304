package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// exchange is the state of one request through the pipeline.
type exchange struct {
	own    string // ownerKey's cache
	m      *mount
	w      *recorder
	r      *http.Request
	id     string // request id for logs and audit
	start  time.Time
	body   []byte
	msgs   []mcp.Envelope
	batch  bool
	rpcID  []byte // id of the first request, for error bodies
	p      *resource.Principal
	method string // first message's method, for metrics
	dec    string // decision label
	// sid is the caller's bound session id (checkSession): the only session
	// id ever sent upstream. bindOnReply binds the id an initialize's reply
	// carries (sessionflow.go).
	sid         string
	bindOnReply func(sid string) error
	// sessionDone ends this exchange's use of its session binding (it is
	// busy, never evicted, until then).
	sessionDone func()
	// streamLease is the open stream's lease in the shared stream budget
	// (acquireStream; "" in memory mode).
	streamLease string
	// bodyCheck is what authentication from the headers left to verify on
	// the body (a DPoP content_digest); loan holds the body's bytes of the
	// in-flight budget until the request ends.
	bodyCheck *resource.BodyCheck
	loan      *bodyLoan
	// hop is the assertion of a request another replica forwarded here;
	// hopTo the owner replica this one is forwarded to, routed by the
	// directory entry hopKind/hopID (forward.go).
	hop            *state.Hop
	hopTo          string
	hopKind, hopID string
	// upHeader are the headers sent upstream for this caller, computed
	// by the credentials step (upcred.go); nil before it ran.
	upHeader http.Header
	// upEnv is the environment a stdio child started for this caller gets
	// on top of its configured one (upcred_env.go); secret.
	upEnv []string
}

// owner is the key sessions are bound to: subjects are unique per issuer only.
func owner(p *resource.Principal) string { return p.Issuer + "\x00" + p.Subject }

// ownerKey is owner of the authenticated caller, built once per request
// (sessions, limits, replay shares and tasks all key by it).
func (x *exchange) ownerKey() string {
	if x.own == "" {
		x.own = owner(x.p)
	}
	return x.own
}

// ServeHTTP is the MCP endpoint of one upstream: edge checks, then
// authentication, limits, protocol checks, session ownership and policy, in
// that order, before anything reaches the upstream.
func (m *mount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{m: m, w: &recorder{ResponseWriter: w, unread: unreadGuard(w, r)}, r: r, id: telemetry.NewRequestID(), start: time.Now(), dec: decError}
	defer x.finish()
	g := m.g
	if !g.edge.check(x.w, r) {
		x.dec = decEdge
		return
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		g.edge.preflight(x.w, r)
		x.dec = decPreflight
		return
	}
	g.edge.cors(x.w, r)
	// One value each: servers disagree on repeated headers (Go takes the
	// first, Node joins them), so the gateway refuses what it and the
	// upstream could read differently.
	for _, h := range singleHeaders {
		if len(r.Header.Values(h)) > 1 {
			x.refuse(decProtocol, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest, msg: "the " + h + " header appears more than once: send it once"})
			return
		}
	}
	sub := strings.TrimPrefix(r.URL.Path, m.path)
	if r.Method != http.MethodPost && r.ContentLength != 0 {
		// GET, DELETE and OPTIONS carry no body in MCP; the gateway never
		// reads or forwards one (the refusal closes the connection).
		x.refuse(decProtocol, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest, msg: r.Method + " requests carry no body on an MCP endpoint"})
		return
	}
	switch {
	case sub == "" && r.Method == http.MethodPost:
		x.post()
	case sub == "" && (r.Method == http.MethodGet || r.Method == http.MethodDelete):
		x.stream()
	case sub == "/sse" && r.Method == http.MethodGet:
		x.legacyStream()
	case sub == "/message" && r.Method == http.MethodPost:
		x.legacyMessage()
	case sub == "" || sub == "/sse" || sub == "/message":
		x.w.Header().Set("Allow", allowFor(sub))
		x.refuse(decError, &failure{status: http.StatusMethodNotAllowed, code: mcp.CodeInvalidRequest,
			msg: "method " + r.Method + " is not allowed on this endpoint: use " + allowFor(sub)})
	default:
		x.refuse(decError, &failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest, msg: "no MCP endpoint at this path"})
	}
}

func allowFor(sub string) string {
	switch sub {
	case "/sse":
		return "GET"
	case "/message":
		return "POST"
	}
	return "POST, GET, DELETE"
}

func (x *exchange) finish() {
	x.loan.release()
	if x.sessionDone != nil {
		x.sessionDone()
	}
	status := x.w.statusCode()
	x.m.g.metrics.Observe(x.m.name, telemetry.MethodLabel(x.method), x.dec, status, time.Since(x.start))
	x.m.g.log.LogAttrs(x.r.Context(), slog.LevelDebug, "request",
		slog.String("request_id", x.id), slog.String("upstream", x.m.name), slog.String("http_method", x.r.Method),
		slog.String("method", x.method), slog.String("decision", x.dec), slog.Int("status", status),
		slog.Duration("duration", time.Since(x.start)))
}

// contentType checks the POST's media type (a header: nothing is read).
func (x *exchange) contentType() bool {
	if ct := x.r.Header.Get("Content-Type"); !isJSON(ct) {
		x.refuse(decError, &failure{status: http.StatusUnsupportedMediaType, code: mcp.CodeInvalidRequest,
			msg: "Content-Type must be application/json, got " + quoteSafe(ct)})
		return false
	}
	return true
}

// readBody reads the body of an authenticated caller — bounded in size, in
// time and by the in-flight byte budget (body.go) — checks it against the
// DPoP proof's content_digest when there is one, and parses the JSON-RPC
// envelope.
func (x *exchange) readBody() bool {
	lim := x.m.g.cfg.Limits
	body, loan, err := readBounded(x.w, x.r, x.m.g.bodies, x.ownerKey(), lim.MaxBodyBytes, lim.BodyReadTimeout.Duration)
	x.loan = loan
	if err != nil {
		x.refuse(decBody, bodyFailure(err, lim.MaxBodyBytes, x.w))
		return false
	}
	x.w.unread = nil
	if err := x.bodyCheck.Check(body); err != nil {
		x.unauthenticated(err)
		return false
	}
	x.body = body
	msgs, batch, err := mcp.Peek(body, lim.MaxJSONDepth)
	if err != nil {
		code, msg := mcp.CodeInvalidRequest, "Invalid request: "+err.Error()
		x.rpcID = mcp.ErrorID(err)
		switch {
		case errors.Is(err, mcp.ErrInvalidParams):
			code, msg = mcp.CodeInvalidParams, "Invalid params: "+err.Error()
		case errors.Is(err, mcp.ErrTooDeep):
			msg = "JSON nesting exceeds " + strconv.Itoa(lim.MaxJSONDepth) + " levels (limits.max_json_depth)"
		case !json.Valid(body):
			code, msg = mcp.CodeParseError, "Parse error: the body is not valid JSON"
		}
		x.refuse(decError, &failure{status: http.StatusBadRequest, code: code, msg: msg})
		return false
	}
	x.msgs, x.batch = msgs, batch
	for i := range msgs {
		if msgs[i].IsRequest() {
			x.rpcID = msgs[i].ID
			break
		}
	}
	if len(msgs) > 0 {
		x.method = msgs[0].Method
		if x.method == "" {
			x.method = "response"
		}
	}
	return true
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// authenticate verifies the caller's token and DPoP proof from the headers
// alone — nothing of the body has been read — and, for requests without a
// body, what the proof says about the (empty) body; then applies the
// per-subject rate limit (limit); then records the proof's jti in the
// subject's share of the mount's replay store. In that order, so that a
// rate-limited request takes no replay entry, and a replayed proof is still
// refused before anything is forwarded. On failure it has written the 401
// (or 400/403) with its challenges, the 429, or the 503.
func (x *exchange) authenticate() bool {
	if _, ok := x.r.Header[state.HeaderHop]; ok {
		return x.authenticateHop() // forward.go: the sending replica verified the caller
	}
	v := x.m.verifier.Load()
	p, bc, err := v.VerifyHeaders(x.r)
	if err == nil && x.r.Method != http.MethodPost {
		err = bc.Check(nil)
	}
	if err != nil {
		x.unauthenticated(err)
		return false
	}
	x.p, x.bodyCheck = p, bc
	if !x.limit() {
		return false
	}
	if err := v.RecordProof(x.r.Context(), x.ownerKey(), bc); err != nil {
		x.replayRefused(err)
		return false
	}
	if n := v.NextNonce(bc); n != "" {
		x.w.Header().Set("DPoP-Nonce", n) // RFC 9449 §8.2: a new nonce before the old one expires
	}
	x.noteGrant()
	return true
}

// limit applies the per-subject token bucket.
func (x *exchange) limit() bool {
	ok, wait := x.m.g.rate.allow(x.ownerKey())
	if ok {
		return true
	}
	secs := int(wait/time.Second) + 1
	x.w.Header().Set("Retry-After", strconv.Itoa(secs))
	x.refuse(decRateLimited, &failure{status: http.StatusTooManyRequests, code: mcp.CodeRateLimited,
		msg: "too many requests for this subject: retry after " + strconv.Itoa(secs) + "s (limits.requests_per_second)"})
	return false
}

// authorize runs the policy on every request in the body; one denial
// refuses the whole POST with one challenge naming all scopes needed.
func (x *exchange) authorize() bool {
	eng := x.m.policy.Load()
	c := x.caller()
	for i := range x.msgs {
		e := &x.msgs[i]
		if e.Method == "" {
			continue
		}
		if mcp.IsTaskMethod(e.Method) {
			if !x.authorizeTask(e) { // tasks.go: bound to the caller, the tool's policy
				return false
			}
			continue
		}
		if !x.authorizeListen(e) || !x.authorizeSubscriptions(e) {
			return false
		}
		d := decide(eng, c, e)
		if d.Allow {
			x.audit(e.Method, e.Name, "allow", d.Reason, 0)
			continue
		}
		x.forbid(d, e, e.Method, e.Name)
		return false
	}
	x.dec = decAllow
	return true
}

func (x *exchange) caller() *policy.Caller {
	return &policy.Caller{Subject: x.p.Subject, Scopes: x.p.Scopes, Claims: x.p.Claims}
}

func (x *exchange) audit(method, name, decision, reason string, status int) {
	x.m.g.audit.write(x.record(method, name, decision, reason, status))
}

// record is an audit record of this request.
func (x *exchange) record(method, name, decision, reason string, status int) *auditRecord {
	rec := &auditRecord{
		Time: time.Now().UTC(), RequestID: x.id, Upstream: x.m.name, Method: method, Name: name,
		Decision: decision, Reason: reason, Status: status, Remote: x.m.g.remoteAddr(x.r),
	}
	if x.p != nil {
		rec.Subject, rec.ClientID, rec.Issuer, rec.TokenID = x.p.Subject, x.p.ClientID, x.p.Issuer, x.p.TokenID
		rec.grantOf(x.p.Claims)
	}
	return rec
}

// post handles a Streamable HTTP POST.
func (x *exchange) post() {
	// Headers first: an unauthenticated or rate-limited caller is refused
	// before a byte of its body is read.
	if !x.contentType() || !x.authenticate() || !x.readBody() || !x.hopBody() {
		return
	}
	info, f := classifyPOST(x.r.Header, x.msgs, x.batch)
	if f == nil && info.era == mcp.EraStateless {
		f = x.m.params.check(x.r.Header, &x.msgs[0])
	}
	if f != nil {
		x.refuse(decProtocol, f)
		return
	}
	if !x.checkSession(info) || !x.authorize() || !x.credentials() {
		return
	}
	if x.method == "subscriptions/listen" {
		// A 2026-07-28 listen stream is long-lived: it ends at shutdown
		// like a GET stream, and its client listens again elsewhere.
		defer x.endsAtShutdown()()
	}
	x.forward(x.request(upstream.Filtered(x.shareStates(x.guardElicitations(x.withTasks(x.replyFilter(), true))))))
}

// stream handles GET (standalone SSE stream) and DELETE (end of session).
func (x *exchange) stream() {
	r := x.r
	if f := classifyStream(r.Header); f != nil {
		x.method = "stream"
		x.refuse(decProtocol, f)
		return
	}
	sid := r.Header.Get(mcp.HeaderSessionID)
	if r.Method == http.MethodGet && sid == "" && r.Header.Get(mcp.HeaderProtocolVersion) == "" {
		// A 2024-11-05 client probing the server URL for the HTTP+SSE
		// endpoint (transports §Backwards Compatibility).
		x.legacyStream()
		return
	}
	x.method = strings.ToLower(r.Method)
	if !x.authenticate() {
		return
	}
	if sid == "" {
		x.refuse(decProtocol, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest, msg: "Mcp-Session-Id header is required for " + r.Method})
		return
	}
	if !x.checkSession(protoInfo{}) || !x.credentials() {
		return
	}
	x.dec = decAllow
	x.audit(r.Method, "", "allow", "", 0)
	if r.Method == http.MethodDelete {
		x.w.onHeader = func(_ http.Header, status int) {
			if status < 300 || status == http.StatusNotFound {
				x.m.sessions.forget(x.sid)
			}
		}
		x.forward(x.request(upstream.NoFilter)) // a DELETE's answer holds no list
		return
	}
	if !x.acquireStream() {
		return
	}
	x.forwardStream(x.request(upstream.Filtered(x.guardElicitations(x.withTasks(x.streamFilter(), false)))))
}

// forwardStream forwards a long-lived stream: the stream slot is released
// and shutdown ends it whether the proxy serves it in this handler or
// detaches it onto the hijacked connection (req.Detach).
func (x *exchange) forwardStream(req *upstream.Request) {
	own := x.ownerKey()
	g := x.m.g
	// The stream keeps its session busy for as long as it is open.
	held := x.sessionDone
	x.sessionDone = nil
	if held == nil {
		held = func() {}
	}
	var detached atomic.Bool
	req.Detach = func() (context.Context, func()) {
		detached.Store(true)
		ctx, cancel := context.WithCancel(g.streamCtx)
		var once sync.Once
		return ctx, func() { once.Do(func() { cancel(); g.streams.release(own, x.streamLease); held() }) }
	}
	stop := x.endsAtShutdown()
	x.forward(req)
	stop()
	if !detached.Load() {
		g.streams.release(own, x.streamLease)
		held()
	}
}

// endsAtShutdown makes the request's context end when gateway shutdown
// starts, so open streams close instead of holding shutdown up.
func (x *exchange) endsAtShutdown() (stop func()) {
	ctx, cancel := context.WithCancelCause(x.r.Context())
	streams := x.m.g.streamCtx
	unhook := context.AfterFunc(streams, func() { cancel(context.Cause(streams)) })
	x.r = x.r.WithContext(ctx)
	return func() { unhook(); cancel(nil) }
}

// acquireStream admits a long-lived stream within the subject's stream
// budget (over every replica in Redis mode: a Redis error refuses, 503).
func (x *exchange) acquireStream() bool {
	lease, r := x.m.g.streams.acquire(x.ownerKey())
	switch {
	case r == nil:
		x.streamLease = lease
		return true
	case r.Unavailable:
		x.stateUnavailable("stream_budget_unavailable")
		return false
	}
	msg := "too many open streams for this subject (limits.max_streams_per_subject): close one first"
	if r.Global {
		msg = "too many open streams for this subject across the gateway's replicas (limits.max_streams_per_subject): close one first"
	}
	x.refuse(decRateLimited, &failure{status: http.StatusTooManyRequests, code: mcp.CodeRateLimited, msg: msg})
	return false
}

// singleHeaders may appear at most once in a request.
var singleHeaders = []string{mcp.HeaderSessionID, mcp.HeaderProtocolVersion, mcp.HeaderLastEventID, mcp.HeaderMethod, mcp.HeaderName}

// stripped are the client's credential headers, never forwarded.
var stripped = map[string]bool{"Authorization": true, "Dpop": true, "Cookie": true, "Proxy-Authorization": true, state.HeaderHop: true}

// forward strips the client's credentials and identity headers, adds the
// gateway's own, and hands the request to the upstream handler with req.
func (x *exchange) forward(req *upstream.Request) {
	if !x.routeState() {
		return
	}
	if x.hopTo != "" {
		x.forwardHop() // forward.go: the owner replica holds the upstream connection
		return
	}
	r := x.r
	// A shallow copy with a new header map that leaves out the client's
	// credentials and identity headers; the values are shared, not copied
	// (upstream handlers only read them).
	out := r.WithContext(r.Context())
	out.Header = make(http.Header, len(r.Header))
	for k, v := range r.Header {
		ck := http.CanonicalHeaderKey(k) // already canonical from net/http: no allocation
		if !stripped[ck] && !slices.Contains(x.m.stripHeaders, ck) {
			out.Header[k] = v
		}
	}
	x.upstreamSession(out.Header)
	if x.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(x.body))
		out.ContentLength = int64(len(x.body))
	} else {
		out.Body, out.ContentLength = http.NoBody, 0 // nothing unread goes upstream
	}
	if len(x.msgs) > 0 && x.msgs[0].Method == "initialize" {
		ok, release := x.reserveSession()
		if !ok {
			return
		}
		defer release()
	}
	prev := x.w.onHeader
	x.w.onHeader = func(h http.Header, status int) {
		x.sessionReply(h, status)
		if prev != nil {
			prev(h, status)
		}
	}
	x.m.handler.ServeMCP(x.w, out, req)
}

// request is the upstream contract of this exchange: the caller (for
// upstream session creation and identity headers), the request id for
// error answers, and the response filter, which every forward names.
func (x *exchange) request(filter upstream.ResponseFilter) *upstream.Request {
	req := upstream.NewRequest(x.upstreamCaller(), filter)
	req.ID = x.rpcID
	return req
}

// upstreamCaller is the caller as upstreams know it: its owner key and
// the client it calls through, and the headers sent upstream on its
// behalf.
func (x *exchange) upstreamCaller() upstream.Caller {
	h := x.upHeader
	if h == nil { // a request refused or ended before the credentials step
		h = x.m.identity(x.p)
	}
	c := upstream.Caller{Owner: x.ownerKey(), Header: h, Env: x.upEnv}
	if x.p != nil {
		c.Client = x.p.ClientID
	}
	return c
}

// identity returns the headers sent upstream: identity headers (when
// configured) and the gateway's own upstream credential.
func (m *mount) identity(p *resource.Principal) http.Header {
	h := m.upstreamHeader.Clone()
	ih := m.cfg.IdentityHeaders
	set := func(name, v string) {
		if name != "" && v != "" {
			h.Set(name, headerSafe(v))
		}
	}
	set(ih.Subject, p.Subject)
	set(ih.ClientID, p.ClientID)
	set(ih.Issuer, p.Issuer)
	set(ih.Scopes, strings.Join(p.Scopes, " "))
	return h
}

// headerSafe keeps an identity value from injecting header syntax.
func headerSafe(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return mcp.EncodeHeaderValue(v)
		}
	}
	return v
}

// legacyStream serves the 2024-11-05 HTTP+SSE stream (GET): the endpoint
// event points at this mount's /message path.
func (x *exchange) legacyStream() {
	x.method = "legacy_stream"
	if !x.authenticate() {
		return
	}
	if !x.credentials() {
		return
	}
	x.dec = decAllow
	x.audit("GET", "sse", "allow", "", 0)
	if !x.acquireStream() {
		return
	}
	defer func() { x.m.g.streams.release(x.ownerKey(), x.streamLease) }()
	defer x.endsAtShutdown()()
	x.m.front.HandleStream(x.w, x.r, x.request(upstream.Filtered(x.guardElicitations(x.withTasks(x.streamFilter(), false)))))
}

// legacyMessage serves a 2024-11-05 POST to the message endpoint.
func (x *exchange) legacyMessage() {
	if !x.contentType() || !x.authenticate() || !x.readBody() {
		return
	}
	if x.batch {
		x.refuse(decError, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest, msg: "batches are not supported on the HTTP+SSE transport: send one message per POST"})
		return
	}
	if !x.hopBody() || !x.legacySession(x.r.URL.Query().Get("sessionId")) || !x.authorize() {
		return
	}
	if x.hopTo != "" {
		x.forwardHop() // the stream is on another replica (legacyhop.go)
		return
	}
	// The answer comes on the session's stream, through that stream's
	// filter (legacyStream).
	out := x.r.Clone(x.r.Context())
	out.Header.Del("Authorization")
	out.Header.Del("DPoP")
	out.Body = io.NopCloser(bytes.NewReader(x.body))
	out.ContentLength = int64(len(x.body))
	x.m.front.HandleMessage(x.w, out)
}
