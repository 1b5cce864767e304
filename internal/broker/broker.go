// Package broker is `mcpgate broker`: a local Streamable HTTP endpoint that
// forwards to remote MCP servers with credentials injected, for HTTP
// clients that cannot do OAuth. It binds loopback, checks Host and Origin
// (DNS rebinding), can demand a local secret, and offers /oauth/login,
// /oauth/callback, /oauth/status and POST /oauth/logout per remote.
package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/origin"
	"github.com/mcpgate/mcpgate/internal/termsafe"
)

// Remote is one forwarded server.
type Remote struct {
	// Prefix is the local path prefix ("" or "/github"); the MCP endpoint
	// is Prefix+"/mcp" and the OAuth pages are under Prefix+"/oauth/".
	Prefix  string
	URL     string
	Session *oauth.Credential
	// Callback receives the authorization redirect at Prefix+"/oauth/callback".
	Callback *oauth.Listener
	Headers  http.Header
	// HTTP sends this remote's upstream requests (nil: Options.HTTP); the
	// broker pins it to the remote's origin (origin.Pin).
	HTTP *http.Client
}

// client is the remote's HTTP client, pinned to its origin (the
// unauthenticated probe for a login challenge).
func (b *Broker) client(rm *Remote) *http.Client {
	c := rm.HTTP
	if c == nil {
		c = b.o.HTTP
	}
	return origin.Pin(c)
}

// authClient is the remote's HTTP client pinned to its origin and
// authenticating with its session (mcpclient.AuthTransport: the same
// credential, challenge and retry rules as mcpgate connect and call).
func (b *Broker) authClient(rm *Remote) *http.Client {
	c := rm.HTTP
	if c == nil {
		c = b.o.HTTP
	}
	return mcpclient.AuthClient(c, rm.Session)
}

// Options configure a broker.
type Options struct {
	Remotes []*Remote
	HTTP    *http.Client
	Log     *slog.Logger
	// Addr is the listen address (host:port) used for Host/Origin checks.
	Addr string
	// AllowedHosts and AllowedOrigins extend the loopback defaults.
	AllowedHosts, AllowedOrigins []string
	// LocalToken, when set, must be presented as "Authorization: Bearer"
	// (or the X-Mcpgate-Token header) on every MCP request, on
	// /oauth/status and on logout; /oauth/login with it answers a one-time
	// login link, and without it or such a link refuses (loginbind.go).
	LocalToken string
	// LoginTimeout bounds a browser login (default 5 minutes).
	LoginTimeout time.Duration
}

// Broker is the HTTP handler.
type Broker struct {
	o       Options
	mux     *http.ServeMux
	hosts   []string
	origins []string

	mu      sync.Mutex             // guards logins and tickets
	logins  map[*Remote]*loginFlow // logins in progress
	tickets map[string]ticket      // one-time login links (local token)
}

// New builds the broker for listen address addr.
func New(o Options) (*Broker, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.LoginTimeout == 0 {
		o.LoginTimeout = 5 * time.Minute
	}
	_, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %v", o.Addr, err)
	}
	b := &Broker{o: o, mux: http.NewServeMux(), logins: map[*Remote]*loginFlow{}, tickets: map[string]ticket{}}
	for _, h := range []string{"127.0.0.1", "localhost", "[::1]"} {
		b.hosts = append(b.hosts, h+":"+port)
		b.origins = append(b.origins, "http://"+h+":"+port)
	}
	b.hosts = append(b.hosts, o.AllowedHosts...)
	b.origins = append(b.origins, o.AllowedOrigins...)
	b.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	seen := map[string]bool{}
	for _, rm := range o.Remotes {
		p := strings.TrimSuffix(rm.Prefix, "/")
		if seen[p] {
			return nil, fmt.Errorf("two remotes share the prefix %q", rm.Prefix)
		}
		seen[p] = true
		b.mux.Handle(p+"/mcp", b.proxy(rm))
		b.mux.HandleFunc("GET "+p+"/oauth/login", b.login(rm))
		b.mux.HandleFunc("GET "+p+"/oauth/callback", b.callback(rm))
		b.mux.HandleFunc("GET "+p+"/oauth/status", b.status(rm))
		b.mux.HandleFunc(p+"/oauth/logout", b.logout(rm))
	}
	return b, nil
}

// ServeHTTP checks Host and Origin before anything else.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(b.hosts, strings.ToLower(r.Host)) {
		http.Error(w, "Host not allowed: the broker only answers on its loopback address (DNS rebinding protection)", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !slices.Contains(b.origins, strings.ToLower(o)) {
		http.Error(w, "Origin not allowed: web pages from other sites may not use the broker", http.StatusForbidden)
		return
	}
	// The broker serves no documents: nothing on its origin may run script
	// (which could call every remote with its credential).
	w.Header().Set("Content-Security-Policy", mcp.ConfinementPolicy)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	b.mux.ServeHTTP(w, r)
}

func (b *Broker) localTokenOK(r *http.Request) bool {
	if b.o.LocalToken == "" {
		return true
	}
	got := r.Header.Get("X-Mcpgate-Token")
	if a := r.Header.Get("Authorization"); got == "" && strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(b.o.LocalToken)) == 1
}

// forwarded request and response headers (Accept is the broker's own:
// mcpAccept)
var (
	requestHeaders  = []string{"Content-Type", mcp.HeaderSessionID, mcp.HeaderProtocolVersion, mcp.HeaderLastEventID, mcp.HeaderMethod, mcp.HeaderName}
	responseHeaders = []string{"Content-Type", mcp.HeaderSessionID, "Retry-After", "Allow"}
)

// proxy forwards MCP traffic for one remote, injecting credentials; the
// AuthTransport retries after a nonce, refresh or step-up the session
// performed. Every failure of a POST is answered as a JSON-RPC error. A
// browser navigation or resource load is refused before anything is
// forwarded (mcp.CheckFetch), and the remote's answer is relayed only as
// an MCP answer (relay).
func (b *Broker) proxy(rm *Remote) http.Handler {
	c := b.authClient(rm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := mcp.CheckFetch(r.Header); err != nil {
			b.o.Log.Warn("broker refused a browser navigation", "path", r.URL.Path, "err", err)
			mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeInvalidRequest, err.Error(), nil)
			return
		}
		body, env, ok := b.readRequest(w, r)
		if !ok {
			return
		}
		out, err := forwardRequest(r, rm, body)
		if err != nil {
			b.fail(w, r, env, http.StatusInternalServerError, mcp.CodeInternalError, err.Error())
			return
		}
		resp, err := c.Do(out)
		if err != nil {
			b.failUpstream(w, r, rm, env, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			// a challenge the session declined (a 403 without
			// insufficient_scope): the remote refused the credential
			b.fail(w, r, env, resp.StatusCode, mcp.CodeFor(clientEra(r), mcp.AppCode(resp.StatusCode)), fmt.Sprintf("the remote server refused the credential (HTTP %d)", resp.StatusCode))
			return
		}
		b.relay(w, r, env, resp)
	})
}

// relay writes the remote's answer through mcp.ConfineAnswer: JSON and
// event streams as they come; a 202, 204, a DELETE's 2xx or an empty body
// as its status alone; any other body (HTML, SVG, text, no type) is replaced by an
// error — for a POST a JSON-RPC error with the remote's 4xx status (a
// client acts on 404 and 405) or 502.
func (b *Broker) relay(w http.ResponseWriter, r *http.Request, env mcp.Envelope, resp *http.Response) {
	h := w.Header()
	for _, k := range responseHeaders {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	body := bufio.NewReaderSize(resp.Body, 32<<10)
	if mcp.ConfineAnswer(h) {
		w.WriteHeader(resp.StatusCode)
		copyFlushing(w, body)
		return
	}
	if _, err := body.Peek(1); err != nil || statusOnly(r, resp) {
		h.Set("Content-Length", "0")
		w.WriteHeader(resp.StatusCode)
		return
	}
	status := resp.StatusCode
	if status/100 != 4 {
		status = http.StatusBadGateway
	}
	b.fail(w, r, env, status, mcp.CodeUpstream, mcp.ConfinedError(resp.StatusCode, resp.Header.Get("Content-Type")))
}

// clientEra: the broker answers its local client as a server, with codes
// by the client's era (mcp.CodeFor).
func clientEra(r *http.Request) mcp.Era {
	return mcp.ErrorEra(r.Header.Get(mcp.HeaderProtocolVersion))
}

// readRequest checks the local token and the method and reads the body
// (at most mcp.MaxMessageBytes) and its envelope.
func (b *Broker) readRequest(w http.ResponseWriter, r *http.Request) ([]byte, mcp.Envelope, bool) {
	var env mcp.Envelope
	body, err := io.ReadAll(io.LimitReader(r.Body, mcp.MaxMessageBytes+1))
	switch {
	case err != nil:
		b.fail(w, r, env, http.StatusBadRequest, mcp.CodeParseError, "reading the request: "+err.Error())
		return nil, env, false
	case len(body) > mcp.MaxMessageBytes:
		b.fail(w, r, env, http.StatusRequestEntityTooLarge, mcp.CodeInvalidRequest, fmt.Sprintf("the request body exceeds %d bytes, the largest MCP message the broker forwards", mcp.MaxMessageBytes))
		return nil, env, false
	}
	if r.Method == http.MethodPost {
		env, _ = mcp.PeekOne(body)
	}
	if !b.localTokenOK(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate-broker"`)
		b.fail(w, r, env, http.StatusUnauthorized, mcp.CodeFor(clientEra(r), mcp.CodeUnauthorized), "this broker requires its local token (see the file named by --require-local-token)")
		return nil, env, false
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
		return body, env, true
	}
	w.Header().Set("Allow", "GET, POST, DELETE")
	b.fail(w, r, env, http.StatusMethodNotAllowed, mcp.CodeInvalidRequest, "method not allowed")
	return nil, env, false
}

// statusOnly: answers whose body means nothing to an MCP client (a
// notification's 202, a session DELETE's 2xx), relayed as their status.
func statusOnly(r *http.Request, resp *http.Response) bool {
	return resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent ||
		(r.Method == http.MethodDelete && resp.StatusCode/100 == 2)
}

// mcpAccept is what the broker asks a remote for: an MCP answer
// (Streamable HTTP, MCP 2026-07-28: a POST lists both types, a GET the
// event stream), never what a browser's Accept would invite.
var mcpAccept = map[string]string{
	http.MethodPost: "application/json, text/event-stream",
	http.MethodGet:  "text/event-stream",
}

// forwardRequest is the upstream request: the MCP headers the client sent
// and the remote's configured headers; no other client header (cookies,
// the local token) leaves the machine.
func forwardRequest(r *http.Request, rm *Remote, body []byte) (*http.Request, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, rm.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range requestHeaders {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	if a := mcpAccept[r.Method]; a != "" {
		out.Header.Set("Accept", a)
	}
	for k, vs := range r.Header {
		if strings.HasPrefix(k, mcp.HeaderParamPrefix) {
			out.Header[k] = vs
		}
	}
	for k, vs := range rm.Headers {
		out.Header[k] = vs
	}
	return out, nil
}

// failUpstream answers a request the remote could not be asked: a
// credential that could not be applied, one the session cannot renew
// (log in at /oauth/login), a remote still refusing after
// mcpclient.MaxAttempts, or a network failure.
func (b *Broker) failUpstream(w http.ResponseWriter, r *http.Request, rm *Remote, env mcp.Envelope, err error) {
	var ae *mcpclient.AuthError
	switch {
	case errors.As(err, &ae) && ae.Status == 0:
		b.fail(w, r, env, http.StatusBadGateway, mcp.CodeUpstream, ae.Error())
	case errors.As(err, &ae) && ae.Err != nil:
		login := "http://" + r.Host + strings.TrimSuffix(rm.Prefix, "/") + "/oauth/login"
		b.fail(w, r, env, http.StatusUnauthorized, mcp.CodeFor(clientEra(r), mcp.CodeUnauthorized), fmt.Sprintf("the broker has no usable credential for %s (%v); open %s in a browser to log in", rm.URL, ae, login))
	case errors.As(err, &ae):
		b.fail(w, r, env, ae.Status, mcp.CodeFor(clientEra(r), mcp.AppCode(ae.Status)), fmt.Sprintf("the remote server refused the credential (HTTP %d after %d attempts)", ae.Status, ae.Attempts))
	default:
		b.fail(w, r, env, http.StatusBadGateway, mcp.CodeUpstream, "cannot reach the remote MCP server: "+err.Error())
	}
}

// copyFlushing streams the body event by event.
func copyFlushing(w http.ResponseWriter, r io.Reader) {
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// fail answers a request the broker could not forward: a POST (a
// JSON-RPC message) gets a JSON-RPC error carrying its id (null when
// unknown), so a client waiting on that id is never left hanging; a GET
// or DELETE gets plain text.
func (b *Broker) fail(w http.ResponseWriter, r *http.Request, env mcp.Envelope, status, code int, msg string) {
	b.o.Log.Warn("broker request failed", "status", status, "err", msg)
	msg = termsafe.String(msg)
	if r.Method == http.MethodPost {
		mcp.WriteError(w, status, env.ID, code, msg, nil)
		return
	}
	http.Error(w, msg, status)
}

// login starts the browser flow: the user's own browser request is
// redirected to the authorization server, which comes back to
// /oauth/callback.
func (b *Broker) login(rm *Remote) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !b.authorizeLogin(w, r, rm) {
			return
		}
		urls := make(chan string, 1)
		errs := make(chan error, 1)
		flow := &loginFlow{urls: urls, binding: randomToken()}
		b.mu.Lock()
		if _, busy := b.logins[rm]; busy {
			b.mu.Unlock()
			http.Error(w, "a login for this server is already in progress; finish it in the tab that opened first", http.StatusConflict)
			return
		}
		b.logins[rm] = flow
		b.mu.Unlock()
		go func() {
			defer func() {
				b.mu.Lock()
				delete(b.logins, rm)
				b.mu.Unlock()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), b.o.LoginTimeout)
			defer cancel()
			ch := challengeOf(ctx, b.client(rm), rm)
			err := rm.Session.LoginWith(ctx, ch, oauth.Interaction{Open: func(u string) error { urls <- u; return nil }})
			if err != nil {
				b.o.Log.Warn("broker login failed", "upstream", rm.URL, "err", err)
			}
			errs <- err
		}()
		select {
		case u := <-urls:
			b.bindCookie(w, rm, flow.binding)
			http.Redirect(w, r, u, http.StatusFound)
		case err := <-errs:
			if err == nil {
				io.WriteString(w, "Already logged in.\n")
				return
			}
			http.Error(w, "login failed: "+termsafe.String(err.Error()), http.StatusBadGateway)
		case <-time.After(30 * time.Second):
			http.Error(w, "the authorization server did not answer in time", http.StatusGatewayTimeout)
		}
	}
}

// challengeOf probes the remote without credentials for its challenge.
func challengeOf(ctx context.Context, c *http.Client, rm *Remote) oauth.Challenge {
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpgate-broker","version":"1"}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rm.URL, strings.NewReader(body))
	if err != nil {
		return oauth.Challenge{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		return oauth.Challenge{}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	cs, _ := oauth.ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	if ch, ok := oauth.Find(cs, "Bearer"); ok {
		return ch
	}
	ch, _ := oauth.Find(cs, "DPoP")
	return ch
}

// status reports the credential state without any secret.
func (b *Broker) status(rm *Remote) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !b.localTokenOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate-broker"`)
			http.Error(w, "this broker requires its local token", http.StatusUnauthorized)
			return
		}
		_ = rm.Session.Load()
		out := map[string]any{"server": rm.URL, "logged_in": false}
		if rec := rm.Session.Record(); rec != nil {
			out["logged_in"] = !rec.Token.Expired(time.Now(), 0) || rec.Token.RefreshToken != ""
			out["issuer"] = rec.Issuer
			out["client_id"] = rec.Client.ID
			out["subject"] = rec.Subject
			out["scopes"] = rec.Token.Scopes
			out["token_type"] = rec.Token.TokenType
			out["refreshable"] = rec.Token.RefreshToken != ""
			if !rec.Token.Expiry.IsZero() {
				out["expiry"] = rec.Token.Expiry
			}
		}
		b.mu.Lock()
		_, out["login_in_progress"] = b.logins[rm]
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		// read with curl on a terminal: server-chosen strings (issuer,
		// client id, scopes) escaped the termsafe way (still valid JSON)
		json.NewEncoder(termsafe.NewWriter(w)).Encode(out)
	}
}

// logout revokes and deletes the credential. It is POST-only and refuses
// cross-site requests (CSRF): a foreign Origin is already refused, and a
// browser form post from another site carries Sec-Fetch-Site: cross-site.
func (b *Broker) logout(rm *Remote) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "logout needs POST", http.StatusMethodNotAllowed)
			return
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			http.Error(w, "cross-site logout refused", http.StatusForbidden)
			return
		}
		if !b.localTokenOK(r) {
			http.Error(w, "this broker requires its local token", http.StatusUnauthorized)
			return
		}
		revoked, err := rm.Session.Logout(r.Context())
		w.Header().Set("Content-Type", "application/json")
		res := map[string]any{"server": rm.URL, "logged_out": true, "revoked": revoked}
		if err != nil {
			res["warning"] = err.Error()
		}
		json.NewEncoder(termsafe.NewWriter(w)).Encode(res)
	}
}

// CallbackURI is the redirect URI of a remote at addr.
func CallbackURI(addr, prefix string) string {
	return (&url.URL{Scheme: "http", Host: addr, Path: strings.TrimSuffix(prefix, "/") + "/oauth/callback"}).String()
}
