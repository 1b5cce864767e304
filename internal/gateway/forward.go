package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/upstream/session"
)

// Replicas sharing Redis (state.redis) find each other's bindings in the
// state.Directory. A binding whose upstream connection lives at the
// upstream (a Streamable HTTP session, an HTTP upstream's task) is served
// by whichever replica the request reaches, after the same ownership
// check as on the replica that created it. A binding whose upstream
// connection lives in one replica (a stdio child, a legacy SSE
// connection, a task host, a parked Multi Round-Trip request) is
// forwarded there (forwardHop): after this replica authenticated the
// caller and checked the binding is the caller's, it reverse-proxies the
// request to the owner's state.replica.advertise_url without the caller's
// credentials, with a hop assertion (state.Hops: HMAC over the owner's
// advertise_url, method, request-URI with its query, session id, body
// digest, timestamp and a single-use nonce) carrying the
// verified principal. The owner (authenticateHop) accepts the assertion
// instead of a token and runs the rest of the pipeline as for any request;
// it never forwards again.

// shared is a gateway's session directory and forwarding; nil in memory
// mode. The Redis handle is the gateway's (state.go).
type shared struct {
	dir      *state.Directory
	hops     *state.Hops // nil: state.replica not configured, nothing is forwarded or accepted
	self     string      // state.replica.advertise_url, "" when not configured
	instance string      // random per process start
	proxy    http.RoundTripper
}

// hopDialTimeout bounds the connection to an owner replica: a dead owner
// answers the client 404 within it, never a hang.
const hopDialTimeout = 2 * time.Second

func newShared(cfg *config.Gateway, r *state.Redis, getenv func(string) string, log *slog.Logger) (*shared, error) {
	if r == nil {
		return nil, nil
	}
	s := &shared{dir: state.NewDirectory(r)}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.instance = hex.EncodeToString(b[:])
	if rc := cfg.State.Replica; rc.Enabled() {
		key, err := state.LoadReplicaKey(rc, getenv)
		if err != nil {
			return nil, err
		}
		s.hops = state.NewHops(key, r)
		s.self = strings.TrimSuffix(rc.AdvertiseURL, "/")
		s.proxy = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: hopDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   hopDialTimeout,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	} else {
		for _, u := range cfg.Upstreams {
			if u.Transport != "streamable" {
				log.Warn("state.redis is set but state.replica is not: sessions of stdio and sse upstreams are served only by the replica that created them (others answer 404); set state.replica.advertise_url and secret_file to forward them", "upstream", u.Name)
				break
			}
		}
	}
	return s, nil
}

// held reports whether m's sessions hold an upstream connection in this
// replica (stdio, sse) rather than at the upstream.
func (m *mount) held() bool {
	_, ok := m.handler.(*session.Server)
	return ok
}

// entry is the directory entry of a binding of the caller created here.
func (x *exchange) entry(owner string) state.Entry {
	sh := x.m.g.shared
	e := state.Entry{Owner: owner, ClientID: x.p.ClientID}
	if x.m.held() {
		e.Held, e.Replica, e.Instance = true, sh.self, sh.instance
	}
	return e
}

// route decides where a binding found in the directory is served:
// here (local true), at another replica (x.hopTo set), or nowhere (the
// binding is gone: the caller gets the not-found answer).
func (x *exchange) route(e *state.Entry) (local, found bool) {
	sh := x.m.g.shared
	switch {
	case !e.Held:
		return true, true // lives at the upstream: any replica serves it
	case x.hop != nil:
		return false, false // a forwarded request is never forwarded again
	case e.Replica == sh.self && e.Instance == sh.instance:
		return true, false // ours, but no longer in our table: it ended
	case e.Replica == "" || sh.hops == nil || e.Replica == sh.self:
		return false, false // held by a replica we cannot reach, or by our previous incarnation
	}
	x.hopTo = e.Replica
	return false, true
}

// unavailable answers 503 when shared state cannot be read: a binding is
// never assumed, and the ownership check never skipped.
func (x *exchange) unavailable(err error) {
	x.m.g.log.Warn("shared state (Redis) unavailable", "upstream", x.m.name, "err", err)
	x.w.Header().Set("Retry-After", "5")
	x.refuse(decError, &failure{status: http.StatusServiceUnavailable, code: mcp.CodeUnavailable,
		msg: "shared state (Redis) unavailable: the gateway cannot check this session's owner; retry shortly"})
}

// forwardHop reverse-proxies the request to the owner replica x.hopTo,
// streaming the answer (SSE flushed per event). The caller's credentials
// and identity headers stay here; the hop assertion carries the principal
// this replica verified. An owner that cannot be reached is a session
// that is gone: 404, and the directory entry is dropped.
func (x *exchange) forwardHop() {
	sh := x.m.g.shared
	target, err := url.Parse(x.hopTo)
	if err != nil {
		x.bindingGone()
		return
	}
	pr, _ := json.Marshal(x.p)
	sid := x.r.Header.Get(mcp.HeaderSessionID)
	hop := sh.hops.Sign(strings.TrimSuffix(x.hopTo, "/"), x.r.Method, x.r.URL.RequestURI(), sid, x.body, pr)
	client := x.m.g.remoteAddr(x.r)
	rp := &httputil.ReverseProxy{
		Transport:     sh.proxy,
		FlushInterval: -1,
		Rewrite: func(out *httputil.ProxyRequest) {
			out.SetURL(target)
			// exactly the request-URI the hop is signed over
			out.Out.URL.Path, out.Out.URL.RawPath, out.Out.URL.RawQuery = x.r.URL.Path, x.r.URL.RawPath, x.r.URL.RawQuery
			out.Out.Host = x.r.Host // the owner's Host check sees what the client sent
			h := out.Out.Header
			for k := range h {
				ck := http.CanonicalHeaderKey(k)
				if stripped[ck] || ck == state.HeaderHop || ck == "X-Forwarded-For" {
					delete(h, k)
				}
			}
			for _, k := range x.m.stripHeaders {
				h.Del(k)
			}
			h.Set(state.HeaderHop, hop)
			h.Set("X-Forwarded-For", client)
		},
		ModifyResponse: func(resp *http.Response) error {
			// This replica set the CORS headers already.
			for k := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
					delete(resp.Header, k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if x.w.wroteHeader {
				return // the owner went away mid-stream: the stream ends
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				x.dropBinding()
			}
			x.m.g.log.Info("owner replica unreachable; the binding is gone", "upstream", x.m.name, "kind", x.hopKind, "owner", x.hopTo, "err", err)
			x.bindingGone()
		},
	}
	out := x.r.WithContext(x.r.Context())
	if x.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(x.body))
		out.ContentLength = int64(len(x.body))
	} else {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	x.dec = decAllow
	rp.ServeHTTP(x.w, out)
}

// bindingGone answers a request whose binding's replica is gone exactly
// as for a binding that does not exist: a session gets the spec's 404, so
// that the client initializes again (2025-11-25 transports §Session
// Management: "it MUST start a new session"); a task the Tasks extension's
// -32602 "task not found"; a requestState the session server's answer for
// an unknown one.
func (x *exchange) bindingGone() {
	switch x.hopKind {
	case state.KindTask:
		x.dec = decDeny
		mcp.WriteError(x.w, http.StatusOK, x.rpcID, mcp.CodeInvalidParams, taskNotFound, nil)
	case state.KindState:
		x.dec = decDeny
		mcp.WriteError(x.w, http.StatusBadRequest, x.rpcID, mcp.CodeInvalidParams, "requestState is unknown, expired, already used, or was issued for another request: send the request again without requestState and inputResponses", nil)
	case state.KindLegacy:
		x.refuse(decSession, &failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest,
			msg: "session not found (its replica is gone): open a new SSE stream"})
	default:
		x.refuse(decSession, &failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest,
			msg: "session not found (its replica is gone): send initialize to start a new session"})
	}
}

// dropBinding removes the directory entry of the binding this request was
// routed by (its owner replica is gone).
func (x *exchange) dropBinding() {
	if x.hopKind == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), time.Second)
	defer cancel()
	_ = x.m.g.shared.dir.Delete(ctx, x.hopKind, x.m.name, x.hopID)
}

// authenticateHop accepts a request forwarded by another replica: its hop
// assertion must verify (shared key, for this replica's advertise_url,
// this method, request-URI and session id, within ±30s, nonce unused); the principal it carries is the caller. Any
// other request carrying the header is refused, whether or not this
// gateway forwards at all.
func (x *exchange) authenticateHop() bool {
	sh := x.m.g.shared
	if sh == nil || sh.hops == nil {
		x.hopRefused("this gateway accepts no forwarded requests (state.replica is not configured)")
		return false
	}
	hop, err := sh.hops.Verify(x.r.Context(), x.r.Header.Get(state.HeaderHop), sh.self, x.r.Method, x.r.URL.RequestURI(), x.r.Header.Get(mcp.HeaderSessionID))
	var ue *state.UnavailableError
	if errors.As(err, &ue) {
		x.unavailable(err)
		return false
	}
	if err != nil {
		x.hopRefused(err.Error())
		return false
	}
	var p resource.Principal
	if json.Unmarshal(hop.Principal, &p) != nil || p.Subject == "" || p.Issuer == "" {
		x.hopRefused("forwarded request refused: malformed principal")
		return false
	}
	x.p, x.hop = &p, hop
	return true
}

func (x *exchange) hopRefused(msg string) {
	x.m.g.log.Warn("forwarded request refused", "upstream", x.m.name, "remote", x.m.g.remoteAddr(x.r), "reason", msg)
	x.refuse(decUnauthenticated, &failure{status: http.StatusUnauthorized, code: mcp.CodeInvalidRequest, msg: msg})
}

// hopBody checks a forwarded POST's body against the digest the sending
// replica signed.
func (x *exchange) hopBody() bool {
	if x.hop == nil || x.hop.BodyMatches(x.body) {
		return true
	}
	x.hopRefused("forwarded request refused: the body is not the one signed")
	return false
}
