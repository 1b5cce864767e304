// Package gateway is `mcpgate serve`: it protects MCP servers as an OAuth
// 2.1 resource server. Each upstream is mounted at its own path with its own
// resource identifier, trusted issuers, DPoP mode and policy; the gateway
// serves RFC 9728 metadata for each, authenticates every request, enforces
// session ownership and policy, and proxies to the upstream without ever
// forwarding the client's token.
package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Options are the gateway's collaborators.
type Options struct {
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// AuthServer, when set, is the built-in authorization server, mounted at
	// the root next to the MCP paths.
	AuthServer http.Handler
	// HTTPClient is used to reach issuers and upstreams. Default: a client
	// with sane timeouts.
	HTTPClient *http.Client
	// Getenv reads environment variables (upstream credentials, child
	// environments). Default os.Getenv.
	Getenv func(string) string
	// Stderr receives the audit log when no audit file is configured.
	// Default os.Stderr.
	Stderr *os.File
	// DPoPNonces issues and checks the DPoP nonces of upstreams with
	// dpop_nonce. Default: built from dpop_nonces. Pass the built-in
	// authorization server's source so that both accept the same nonces.
	DPoPNonces dpop.NonceSource
	// Redis is the replica-shared state (state.redis); default: opened
	// from the configuration when state.redis.url is set (state.go).
	Redis *state.Redis
	// TokenExchangers builds the RFC 8693 exchanger of each upstream with
	// upstream_auth.token_exchange (cmd wires internal/oauth); nil: such
	// an upstream fails to start (upcred_exchange.go).
	TokenExchangers NewTokenExchanger
}

// Gateway is a running `mcpgate serve`.
type Gateway struct {
	cfg     *config.Gateway
	opts    Options
	log     *slog.Logger
	getenv  func(string) string
	metrics *telemetry.Metrics
	edge    *edgePolicy
	rate    *rateLimiter
	streams *streamLimiter
	// budgets count per-subject shares over every replica (Redis mode;
	// budgets.go); nil in memory mode.
	budgets *budgets
	bodies  *bodyBudget  // authenticated MCP request bodies
	forms   *bodyBudget  // built-in authorization server bodies (unauthenticated)
	conns   *connLimiter // every listener's connections
	audit   *auditLog
	proxies []*net.IPNet
	mounts  []*mount
	handler http.Handler
	// nonces is the DPoP nonce source every mount shares (nil when no
	// upstream demands nonces).
	nonces dpop.NonceSource
	// assertKeys sign identity assertions (assertkeys.go); nil when no
	// upstream has upstream_auth.identity_assertion.
	assertKeys *assertionKeys
	// shared is the session directory and forwarding (forward.go); nil
	// in memory mode.
	shared *shared
	// redis is the shared state, nil in memory mode; ownRedis: opened by
	// New, closed by Shutdown (state.go).
	redis      *state.Redis
	ownRedis   bool
	stateProbe stateProbe // the last Redis answer to /readyz (state.go)

	// streamCtx ends every long-lived stream when shutdown starts, with
	// cause upstream.ErrShutdown (the stream then sends an SSE retry).
	streamCtx     context.Context
	cancelStreams context.CancelCauseFunc

	// draining is set by Drain and Shutdown: /readyz fails (drain.go).
	draining atomic.Bool
	// stopping is set by Shutdown: requests that still get in are refused.
	stopping atomic.Bool

	mu      sync.Mutex // guards servers and closed
	servers []*http.Server
	closed  bool
}

// New builds the gateway from a validated configuration. It does not need
// the issuers to be reachable: keys are fetched in the background and
// /readyz reports when they are usable.
func New(ctx context.Context, cfg *config.Gateway, opts Options) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	g := &Gateway{
		cfg: cfg, opts: opts, log: opts.Logger, getenv: opts.Getenv,
		metrics: telemetry.NewMetrics(),
		rate:    newRateLimiter(cfg.Limits.RequestsPerSecond, cfg.Limits.Burst),
		streams: newStreamLimiter(cfg.Limits.MaxStreamsPerSubject),
		bodies:  newBodyBudget(cfg.Limits.BodyBytesInFlight, cfg.Limits.MaxBodyBytes),
		forms:   newFormBudget(cfg.Limits.FormBytesInFlight, cfg.Limits.MaxFormBytes),
	}
	g.streamCtx, g.cancelStreams = context.WithCancelCause(context.Background())
	var err error
	if g.edge, err = newEdgePolicy(cfg); err != nil {
		return nil, fmt.Errorf("public_url: %w", err)
	}
	if g.proxies, err = parseProxies(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	g.conns = g.newConnLimiter()
	if err = g.openState(); err != nil {
		return nil, err
	}
	if g.nonces, err = dpopNonces(cfg, opts); err != nil {
		_ = g.closeState()
		return nil, err
	}
	if g.shared, err = newShared(cfg, g.redis, g.getenv, g.log); err != nil {
		_ = g.closeState()
		return nil, err
	}
	if err = g.openAssertionKeys(); err != nil {
		_ = g.closeState()
		return nil, err
	}
	if g.audit, err = openAudit(cfg.Audit, opts.Stderr, g.log); err != nil {
		_ = g.closeState()
		return nil, err
	}
	for _, u := range cfg.Upstreams {
		m, err := g.newMount(ctx, u)
		if err != nil {
			g.closeMounts(ctx)
			g.audit.Close()
			_ = g.closeState()
			return nil, err
		}
		g.mounts = append(g.mounts, m)
	}
	g.handler = g.routes()
	if g.budgets != nil {
		g.budgets.start()
	}
	return g, nil
}

// dpopNonces is the nonce source of the mounts: the one given, else one
// built from dpop_nonces when an upstream demands nonces.
func dpopNonces(cfg *config.Gateway, opts Options) (dpop.NonceSource, error) {
	if opts.DPoPNonces != nil {
		return opts.DPoPNonces, nil
	}
	for _, u := range cfg.Upstreams {
		if u.DPoPNonce {
			return resource.NewNonceSource(cfg.DPoPNonces, cfg.PublicURL, opts.Getenv)
		}
	}
	return nil, nil
}

func parseProxies(list []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for i, p := range list {
		if !strings.Contains(p, "/") {
			if ip := net.ParseIP(p); ip != nil {
				bits := 32
				if ip.To4() == nil {
					bits = 128
				}
				p = fmt.Sprintf("%s/%d", p, bits)
			}
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies[%d]: %q is not an IP or CIDR", i, p)
		}
		out = append(out, n)
	}
	return out, nil
}

// Handler returns the gateway's HTTP handler (for tests and embedding).
func (g *Gateway) Handler() http.Handler { return g.handler }

// Metrics returns the gateway's Prometheus handler.
func (g *Gateway) Metrics() http.Handler { return g.metrics.Handler() }

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	for _, m := range g.mounts {
		for _, p := range []string{m.path, m.path + "/sse", m.path + "/message"} {
			mux.Handle(p, m)
		}
		prm := "/.well-known/oauth-protected-resource" + m.path
		mux.Handle(prm, noBody(g.metadata(m)))
	}
	if root := g.rootMount(); root != nil {
		mux.Handle("/.well-known/oauth-protected-resource", noBody(g.metadata(root)))
	}
	if g.assertKeys != nil {
		mux.Handle(assertionJWKSPath, noBody(g.assertKeys.jwksHandler()))
	}
	mux.Handle("/healthz", noBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	})))
	mux.Handle("/readyz", noBody(http.HandlerFunc(g.ready)))
	if g.cfg.Metrics.ServeOnMain {
		mux.Handle("/metrics", noBody(g.metrics.Handler()))
	}
	if cr := g.connectRoutes(); cr != nil {
		cr.register(mux)
	}
	if g.opts.AuthServer != nil {
		mux.Handle("/", g.limitForms(g.opts.AuthServer))
	} else {
		mux.Handle("/", noBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, []byte(`{"error":"not_found","error_description":"no MCP endpoint or metadata at this path"}`))
		})))
	}
	return g.drainPhases(g.edgeOnly(mux))
}

// edgeOnly applies the Host check (DNS rebinding) to every path; MCP paths
// add the Origin check and CORS themselves.
func (g *Gateway) edgeOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.edge.hostAllowed(r.Host) {
			unreadGuard(w, r)(w.Header())
			mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeInvalidRequest,
				"Host header "+quoteSafe(r.Host)+" is not allowed: use the gateway's public host or add it to allowed_hosts", nil)

			return
		}
		next.ServeHTTP(w, r)
	})
}

// rootMount is the upstream described at the root well-known URI: the only
// one, or the one mounted at /mcp.
func (g *Gateway) rootMount() *mount {
	if len(g.mounts) == 1 {
		return g.mounts[0]
	}
	for _, m := range g.mounts {
		if m.path == "/mcp" {
			return m
		}
	}
	return nil
}

// metadata serves RFC 9728 protected resource metadata. It is public and
// readable from any origin.
func (g *Gateway) metadata(m *mount) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "MCP-Protocol-Version")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"invalid_request","error_description":"use GET"}`))
			return
		}
		h.Set("Cache-Control", "public, max-age=300")
		writeJSON(w, http.StatusOK, m.verifier.Load().Metadata())
	})
}

// ready reports whether every upstream can serve: keys (or introspection)
// usable and the upstream reachable, and the shared state (Redis) answering.
func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) {
	if g.readyDraining(w) {
		return
	}
	type state struct {
		Ready bool   `json:"ready"`
		Error string `json:"error,omitempty"`
	}
	out := map[string]state{}
	ok := true
	for _, m := range g.mounts {
		err := m.verifier.Load().Ready()
		if err == nil {
			err = m.reachable(r.Context())
		}
		st := state{Ready: err == nil}
		if err != nil {
			st.Error = err.Error()
			ok = false
		}
		out[m.name] = st
	}
	body := map[string]any{"upstreams": out}
	if err := g.stateReady(r.Context()); err != nil {
		ok = false
		body["state"] = state{Error: err.Error()}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	body["ready"] = ok
	b, _ := json.Marshal(body)
	writeJSON(w, status, b)
}

// remoteAddr is the client address for logs and audit: the peer, or the
// last address a trusted proxy added to X-Forwarded-For.
func (g *Gateway) remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !g.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		if !g.trusted(h) {
			return h
		}
		host = h
	}
	return host
}

func (g *Gateway) trusted(host string) bool {
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range g.proxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Serve accepts connections on ln until Shutdown. It also starts the
// metrics listener when one is configured.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       g.idleTimeout(),
		MaxHeaderBytes:    g.cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnState:         g.conns.connState,
		ConnContext:       connContext,
	}
	// Counted before TLS: a refused connection costs no handshake.
	ln = &limitListener{Listener: ln, l: g.conns}
	if g.cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
		}
		minV := uint16(tls.VersionTLS12)
		if g.cfg.TLS.MinVersion == "1.3" {
			minV = tls.VersionTLS13
		}
		srv.TLSConfig = &tls.Config{MinVersion: minV, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	if !g.track(srv) {
		return http.ErrServerClosed
	}
	if g.cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", g.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		msrv := &http.Server{Handler: g.metricsMux(), ReadHeaderTimeout: headerTimeout, IdleTimeout: g.idleTimeout(),
			MaxHeaderBytes: g.cfg.Limits.MaxHeaderBytes, ConnState: g.conns.connState, ConnContext: connContext}
		if g.track(msrv) {
			go func() { _ = msrv.Serve(&limitListener{Listener: mln, l: g.conns}) }()
		}
	}
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (g *Gateway) metricsMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", g.metrics.Handler())
	return mux
}

func (g *Gateway) track(s *http.Server) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.servers = append(g.servers, s)
	return true
}

// Shutdown is the final phase of a graceful stop (drain.go): it stops
// accepting connections, ends long-lived streams (with an SSE retry field),
// waits for in-flight requests until ctx ends, then stops every upstream
// session and child process. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	servers := g.servers
	g.mu.Unlock()

	g.draining.Store(true)
	g.stopping.Store(true)
	g.cancelStreams(upstream.ErrShutdown)
	errs := g.stopServers(ctx, servers)
	// Upstream sessions and children stop after the in-flight requests, so
	// a request to a stdio child that was in flight completes. Streams no
	// longer hold anyone up: streamCtx ended them.
	mctx, cancel := stopContext(ctx)
	errs = append(errs, g.closeMounts(mctx))
	cancel()
	g.budgets.close()
	errs = append(errs, g.audit.Close(), g.closeState())
	return errors.Join(errs...)
}

// stopServers shuts the HTTP servers down concurrently, bounded by ctx;
// a server that does not finish in time has its connections closed.
func (g *Gateway) stopServers(ctx context.Context, servers []*http.Server) []error {
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex // guards errs while the goroutines run
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(ctx); err != nil {
				_ = s.Close()
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

func (g *Gateway) closeMounts(ctx context.Context) error {
	var errs []error
	for _, m := range g.mounts {
		errs = append(errs, m.close(ctx))
	}
	return errors.Join(errs...)
}

// Reload applies new policy and issuer settings (SIGHUP) without dropping
// sessions. Upstreams are matched by path; adding, removing or re-pointing
// upstreams needs a restart and is reported as an error.
func (g *Gateway) Reload(ctx context.Context, cfg *config.Gateway) error {
	byPath := map[string]config.Upstream{}
	for _, u := range cfg.Upstreams {
		byPath[u.Path] = u
	}
	if len(byPath) != len(g.mounts) {
		return errors.New("reload: the set of upstreams changed; restart mcpgate to add or remove upstreams")
	}
	for _, m := range g.mounts {
		u, ok := byPath[m.path]
		if !ok {
			return fmt.Errorf("reload: upstream at %s is gone; restart mcpgate to remove upstreams", m.path)
		}
		if u.URL != m.cfg.URL || strings.Join(u.Command, "\x00") != strings.Join(m.cfg.Command, "\x00") || u.Transport != m.cfg.Transport {
			return fmt.Errorf("reload: upstream at %s changed its url, command or transport; restart mcpgate for that", m.path)
		}
	}
	type built struct {
		v   *resource.Verifier
		eng *policy.Engine
	}
	next := make([]built, len(g.mounts))
	for i, m := range g.mounts {
		v, eng, err := m.buildAuth(ctx, byPath[m.path])
		if err != nil {
			for _, b := range next[:i] {
				b.v.Close()
			}
			return fmt.Errorf("reload: %w (the previous configuration stays in force)", err)
		}
		next[i] = built{v, eng}
	}
	for i, m := range g.mounts {
		m.installAuth(byPath[m.path], next[i].v, next[i].eng)
	}
	g.log.Info("configuration reloaded", "upstreams", len(g.mounts))
	return nil
}
