package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Request bodies are the one thing a caller can make the gateway hold in
// memory for as long as it likes to send them. Three rules keep that
// bounded:
//
//   - nothing of a body is read before the caller is authenticated from
//     the headers (MCP endpoints); a refusal written before the body was
//     read closes the connection instead of draining the body;
//   - a body is read under a deadline (limits.body_read_timeout);
//   - the bytes of all bodies held at once come from a budget, taken as
//     the buffer grows with the data that actually arrived — never
//     reserved from Content-Length, and nothing for a caller that has
//     sent nothing. Authenticated MCP bodies draw on
//     limits.body_bytes_in_flight (a quarter per subject); the built-in
//     authorization server's bodies, which arrive unauthenticated, draw on
//     their own limits.form_bytes_in_flight (a sixteenth per client
//     address, IPv6 per /64), so they can never starve the MCP traffic.

// bodyBudget is the global in-flight byte budget for request bodies.
type bodyBudget struct {
	max      int64 // 0: no limit
	perOwner int64

	mu     sync.Mutex // guards inUse and owners
	inUse  int64
	peak   int64 // high-water mark of inUse
	owners map[string]int64
}

func newBodyBudget(limit, maxBody int64) *bodyBudget {
	return &bodyBudget{max: limit, perOwner: max(limit/4, maxBody), owners: map[string]int64{}}
}

// newFormBudget is the authorization server's budget: unauthenticated
// callers are many and cheap, so one address gets a sixteenth.
func newFormBudget(limit, maxForm int64) *bodyBudget {
	return &bodyBudget{max: limit, perOwner: max(limit/16, maxForm), owners: map[string]int64{}}
}

// take reserves n bytes for owner; false when the global budget or the
// owner's share is exhausted.
func (b *bodyBudget) take(owner string, n int64) bool {
	if b.max <= 0 || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inUse+n > b.max || b.owners[owner]+n > b.perOwner {
		return false
	}
	b.inUse += n
	b.peak = max(b.peak, b.inUse)
	b.owners[owner] += n
	return true
}

// give returns n bytes of owner.
func (b *bodyBudget) give(owner string, n int64) {
	if b.max <= 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse -= n
	if b.owners[owner] -= n; b.owners[owner] <= 0 {
		delete(b.owners, owner)
	}
}

// Peak reports the most bytes ever held at once (for tests).
func (b *bodyBudget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// InUse reports the bytes currently held (for tests and metrics).
func (b *bodyBudget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}

var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyBudget   = errors.New("request body budget exhausted")
	errBodyTimeout  = errors.New("request body not received in time")
)

// smallBody is the size of the first, fixed buffer a body is read into.
// It is not taken from the budget: a body that fits (most requests) never
// waits on it, and its memory is bounded by the connection caps
// (limits.max_connections × 4 KiB). Beyond it the buffer doubles as data
// arrives, each step taken from the budget: what a body holds is at most
// twice what it sent.
const smallBody = 4 << 10

// bodyLoan is a body read under the budget; release gives its bytes back.
type bodyLoan struct {
	b     *bodyBudget
	owner string
	n     int64
}

func (l *bodyLoan) release() {
	if l != nil && l.b != nil {
		l.b.give(l.owner, l.n)
		l.n = 0
	}
}

// readBounded reads r's body: at most limit bytes, within timeout, with
// every byte of buffer taken from b for owner. The returned loan holds the
// buffer's bytes until released (also on error).
func readBounded(w http.ResponseWriter, r *http.Request, b *bodyBudget, owner string, limit int64, timeout time.Duration) ([]byte, *bodyLoan, error) {
	loan := &bodyLoan{b: b, owner: owner}
	if r.ContentLength > limit {
		return nil, loan, errBodyTooLarge // refused from the header, nothing read
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return []byte{}, loan, nil
	}
	rc := http.NewResponseController(w)
	if timeout > 0 {
		// Unsupported writers (tests' recorders) have no deadline to set.
		if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
			// Clear it once the body is in: a deadline left behind would
			// end the request (the server's background read fails) while
			// the upstream answers or a stream runs.
			defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
		}
	}
	// The body can be no longer than its declared length (net/http
	// enforces it), so that is the growth cap when it is known; memory is
	// only ever taken for bytes that arrived, in doubling steps.
	ceil := limit
	if r.ContentLength > 0 {
		ceil = r.ContentLength
	}
	body := r.Body
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 0, min(smallBody, ceil))
	grow := func() error {
		// Only called with buf full of bytes that arrived.
		next := min(int64(cap(buf))*2, ceil)
		if !b.take(owner, next-loan.n) {
			return errBodyBudget
		}
		loan.n = next
		nb := make([]byte, len(buf), next)
		copy(nb, buf)
		buf = nb
		return nil
	}
	for {
		if int64(len(buf)) == ceil {
			// Full: the body must end here (one byte more is too large).
			var one [1]byte
			n, err := body.Read(one[:])
			if n > 0 {
				return nil, loan, errBodyTooLarge
			}
			if err == io.EOF {
				return buf, loan, nil
			}
			if err != nil {
				return nil, loan, classifyReadErr(err, timeout, deadline)
			}
			continue
		}
		if len(buf) == cap(buf) {
			if err := grow(); err != nil {
				return nil, loan, err
			}
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, loan, nil
		}
		if err != nil {
			return nil, loan, classifyReadErr(err, timeout, deadline)
		}
	}
}

func classifyReadErr(err error, timeout time.Duration, deadline time.Time) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.Is(err, errBodyTooLarge):
		return err
	case timeout > 0 && !time.Now().Before(deadline):
		return errBodyTimeout
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return errBodyTimeout
	}
	return err
}

// unreadGuard makes a response written before the request body was read
// end the connection: net/http would otherwise drain up to 256 KiB of the
// unread body, without a deadline, before and after the response — a
// caller refused from its headers could still make the gateway read.
func unreadGuard(w http.ResponseWriter, r *http.Request) func(h http.Header) {
	return func(h http.Header) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return
		}
		h.Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// bodyFailure is the JSON-RPC refusal for a body that could not be read.
func bodyFailure(err error, limit int64, w http.ResponseWriter) *failure {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return &failure{status: http.StatusRequestEntityTooLarge, code: mcp.CodeInvalidRequest,
			msg: "request body exceeds " + strconv.FormatInt(limit, 10) + " bytes (limits.max_body_bytes)"}
	case errors.Is(err, errBodyBudget):
		w.Header().Set("Retry-After", "1")
		return &failure{status: http.StatusServiceUnavailable, code: mcp.CodeUnavailable,
			msg: "the gateway is holding too many request bodies right now (limits.body_bytes_in_flight): retry shortly"}
	case errors.Is(err, errBodyTimeout):
		return &failure{status: http.StatusRequestTimeout, code: mcp.CodeInvalidRequest,
			msg: "the request body did not arrive within limits.body_read_timeout"}
	}
	return &failure{status: http.StatusBadRequest, code: mcp.CodeParseError, msg: "could not read the request body"}
}

// limitForms bounds the built-in authorization server's request bodies:
// each is read here, under limits.max_form_bytes, the read deadline and the
// authorization server's own budget (owner: the client address, IPv6 per
// /64, behind trusted_proxies the forwarded one), before the server parses
// it. While the body is awaited the connection counts as idle, so at the
// connection cap it is among the first closed.
func (g *Gateway) limitForms(next http.Handler) http.Handler {
	l := g.cfg.Limits
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.Method == http.MethodGet || r.Method == http.MethodHead {
			if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
				// A GET with a body: the server never reads it.
				w.Header().Set("Connection", "close")
				_ = http.NewResponseController(w).SetReadDeadline(time.Now())
				r.Body = http.NoBody
			}
			next.ServeHTTP(w, r)
			return
		}
		waited := g.conns.waitingUnauthenticated(r)
		body, loan, err := readBounded(w, r, g.forms, addrKey(g.remoteAddr(r)), l.MaxFormBytes, l.BodyReadTimeout.Duration)
		waited()
		defer loan.release()
		if err != nil {
			unreadGuard(w, r)(w.Header())
			status, desc := http.StatusBadRequest, "the request body could not be read"
			switch {
			case errors.Is(err, errBodyTooLarge):
				status, desc = http.StatusRequestEntityTooLarge, "the request body exceeds "+strconv.FormatInt(l.MaxFormBytes, 10)+" bytes (limits.max_form_bytes)"
			case errors.Is(err, errBodyBudget):
				w.Header().Set("Retry-After", "1")
				status, desc = http.StatusServiceUnavailable, "the server is busy: retry shortly"
			case errors.Is(err, errBodyTimeout):
				status, desc = http.StatusRequestTimeout, "the request body did not arrive in time"
			}
			writeJSON(w, status, []byte(`{"error":"invalid_request","error_description":"`+desc+`"}`))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// noBody serves handlers that never read a body: a request that has one
// gets its answer and the connection closed, and none of the body is read
// (net/http would drain up to 256 KiB of it, without a deadline).
func noBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unreadGuard(w, r)(w.Header())
		next.ServeHTTP(w, r)
	})
}
