package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpproxy"
	"github.com/mcpgate/mcpgate/internal/upstream/legacy"
	"github.com/mcpgate/mcpgate/internal/upstream/session"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// mount is one protected upstream at its path.
type mount struct {
	g        *Gateway
	cfg      config.Upstream
	name     string
	path     string
	endpoint string // public URL of the MCP endpoint

	// verifier and policy are swapped on reload (SIGHUP); sessions survive.
	verifier atomic.Pointer[resource.Verifier]
	policy   atomic.Pointer[policy.Engine]
	// challenges picks the scopes of this upstream's challenges; swapped
	// with the policy (challenge.go). elevations correlates step-up
	// challenges with their grants for the audit log (elevation.go).
	challenges atomic.Pointer[scopeChallenges]
	elevations *elevations

	handler  upstream.Handler // Streamable HTTP towards the client
	front    *legacy.Front
	sessions *sessionBinder
	ending   chan struct{} // DELETEs of evicted sessions in flight (endSession)
	// slots is the one budget every upstream connection of this mount
	// passes through (stdio children, legacy SSE connections): max_sessions
	// in all, a fair share per subject (upstream.Limit).
	slots    *upstream.Slots
	params   *paramHeaders
	tasks    *taskBinder // task ids bound to the caller that created them (tasks.go)
	shutdown []func(context.Context) error
	// upstreamHeader is the gateway's own credential for the upstream.
	upstreamHeader http.Header
	// credSources obtain each caller's own upstream credential (upcred.go).
	credSources []credentialSource
	// stripHeaders are client headers never forwarded (identity header names).
	stripHeaders []string
	// replay is the mount's DPoP jti store; it outlives reloads, so that a
	// reload never makes a used proof acceptable again.
	replay dpop.ReplayStore
}

func (g *Gateway) newMount(ctx context.Context, u config.Upstream) (*mount, error) {
	m := &mount{
		g: g, cfg: u, name: u.Name, path: u.Path,
		endpoint:   strings.TrimSuffix(g.cfg.PublicURL, "/") + u.Path,
		sessions:   newSessionBinder(sessionTable(u, g.cfg.Limits), u.SessionIdleTimeout.Duration),
		ending:     make(chan struct{}, endSessionsInFlight),
		slots:      upstream.NewSlots(u.MaxSessions, fairShare(u.MaxSessions, g.cfg.Limits.MaxSessionsPerSubject, 16)),
		params:     newParamHeaders(),
		replay:     g.replayStore(u),
		tasks:      newTaskBinder(g.cfg.Limits),
		elevations: newElevations(),
	}
	m.sessions.end = m.endSession
	if g.shared != nil {
		m.sessions.gone = m.forgetShared
	}
	for _, h := range []string{u.IdentityHeaders.Subject, u.IdentityHeaders.ClientID, u.IdentityHeaders.Scopes, u.IdentityHeaders.Issuer} {
		if h != "" {
			m.stripHeaders = append(m.stripHeaders, http.CanonicalHeaderKey(h))
		}
	}
	hdr, err := upstreamCredential(u.UpstreamAuth, g.getenv)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	m.upstreamHeader = hdr
	if m.credSources, err = m.buildCredentials(u); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	v, eng, err := m.buildAuth(ctx, u)
	if err != nil {
		return nil, err
	}
	m.installAuth(u, v, eng)
	if err := m.buildUpstream(); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	return m, nil
}

// newReplayStore is a mount's DPoP jti store: limits.dpop_replay_entries
// in all, limits.dpop_replay_per_subject per subject (defaults when unset,
// as for a Gateway built without config.Load).
func newReplayStore(l config.Limits) *dpop.MemoryReplay {
	total, share := l.DPoPReplayEntries, l.DPoPReplayPerSubject
	if total <= 0 {
		total = 200000
	}
	if share <= 0 {
		share = min(10000, max(1, total/2))
	}
	return dpop.NewOwnedMemoryReplay(total, share)
}

// sessionTable is the budget of the session binding table. On a Streamable
// HTTP upstream a binding costs the gateway memory only (the upstream
// session is the upstream's business): 100,000 in all, a subject's share is
// limits.max_http_sessions_per_subject, and a full table evicts the least
// recently used idle binding of any subject. On stdio and legacy SSE
// upstreams each binding stands for a child or a connection: max_sessions
// in all, limits.max_sessions_per_subject per subject, and a full table
// refuses (503) instead of ending another subject's session.
func sessionTable(u config.Upstream, l config.Limits) *upstream.Slots {
	if u.Transport == "streamable" {
		const size = 100000
		return upstream.NewSlots(size, fairShare(size, l.MaxHTTPSessionsPerSubject, 1024)).EvictAnyIdle()
	}
	return upstream.NewSlots(u.MaxSessions, fairShare(u.MaxSessions, l.MaxSessionsPerSubject, 16))
}

// fairShare is one subject's share of a budget of total sessions: the
// configured n (def when unset), but never more than half of the total
// (at least 1), so that one subject cannot take them all.
func fairShare(total, n, def int) int {
	if n <= 0 {
		n = def
	}
	return max(1, min(n, total/2))
}

// buildAuth builds the verifier and the policy engine of u.
func (m *mount) buildAuth(ctx context.Context, u config.Upstream) (*resource.Verifier, *policy.Engine, error) {
	issuers := u.Issuers
	if len(issuers) == 0 {
		issuers = m.g.cfg.Issuers
	}
	issuers = m.g.builtinIssuers(issuers)
	v, err := resource.New(ctx, resource.Options{
		Resource:              u.Resource,
		Endpoint:              m.endpoint,
		Issuers:               issuers,
		DPoP:                  u.DPoP,
		DPoPNonce:             u.DPoPNonce,
		Nonces:                m.g.nonces,
		Replay:                m.replay,
		DPoPContentDigest:     u.DPoPContentDigest,
		ScopesSupported:       u.ScopesSupported,
		ResourceName:          u.ResourceName,
		ResourceDocumentation: u.ResourceDocumentation,
		HTTPClient:            localKeysClient(m.g.opts.HTTPClient, m.g.cfg.PublicURL, m.g.opts.AuthServer),
		Logger:                m.g.log.With("upstream", u.Name),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	eng, err := policy.Compile(u.Policy, u.ScopeHierarchy)
	if err != nil {
		v.Close()
		return nil, nil, fmt.Errorf("upstream %s: policy: %w", u.Name, err)
	}
	return v, eng, nil
}

// installAuth swaps in a new verifier and policy; requests in flight keep
// the ones they loaded.
func (m *mount) installAuth(u config.Upstream, v *resource.Verifier, eng *policy.Engine) {
	if old := m.verifier.Swap(v); old != nil {
		old.Close()
	}
	m.policy.Store(eng)
	m.challenges.Store(newScopeChallenges(u, eng))
	m.cfg.Policy, m.cfg.Issuers, m.cfg.ScopesSupported, m.cfg.ScopeHierarchy = u.Policy, u.Issuers, u.ScopesSupported, u.ScopeHierarchy
}

// reachable checks that the upstream can be reached: a TCP connection for
// URL upstreams, an executable for stdio commands.
func (m *mount) reachable(ctx context.Context) error {
	if m.cfg.Transport == "stdio" {
		if _, err := exec.LookPath(m.cfg.Command[0]); err != nil {
			return fmt.Errorf("command %q not found", m.cfg.Command[0])
		}
		return nil
	}
	u, err := url.Parse(m.cfg.URL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("upstream %s unreachable", u.Host)
	}
	return c.Close()
}

// buildUpstream creates the transport towards the upstream and the legacy
// HTTP+SSE front for 2024-11-05 clients.
func (m *mount) buildUpstream() error {
	lg := m.g.log.With("upstream", m.name)
	met := m.g.metrics
	var legacyDial upstream.Dialer
	switch m.cfg.Transport {
	case "streamable":
		p, err := httpproxy.New(httpproxy.Options{
			URL:             m.cfg.URL,
			Header:          m.upstreamHeader,
			ResponseTimeout: m.g.cfg.Limits.UpstreamTimeout.Duration,
			Logger:          lg,
			Streams:         telemetry.GaugeFor(met.Streams, m.name),
		})
		if err != nil {
			return err
		}
		m.handler = p
		legacyDial = upstream.Limit(legacy.StreamableDialer(legacy.ClientOptions{URL: m.cfg.URL, Header: m.upstreamHeader, HTTPClient: m.g.opts.HTTPClient, Logger: lg}), m.slots)
	case "sse":
		legacyDial = upstream.Limit(legacy.Dialer(legacy.ClientOptions{URL: m.cfg.URL, Header: m.upstreamHeader, HTTPClient: m.g.opts.HTTPClient, Logger: lg}), m.slots)
		m.handler = m.sessionServer(legacyDial, lg)
	case "stdio":
		legacyDial = upstream.Limit(stdio.Dialer(stdio.Options{
			Command:  m.cfg.Command,
			Env:      childEnv(m.cfg, m.g.getenv),
			Dir:      m.cfg.Dir,
			Logger:   lg,
			Children: telemetry.GaugeFor(met.Children, m.name),
		}), m.slots)
		m.handler = m.sessionServer(legacyDial, lg)
	default:
		return fmt.Errorf("transport %q: use streamable, sse or stdio", m.cfg.Transport)
	}
	m.front = legacy.NewFront(legacy.FrontOptions{
		Dial:        legacyDial,
		MessagePath: m.path + "/message",
		IdleTimeout: m.cfg.SessionIdleTimeout.Duration,
		Logger:      lg,
		Publish:     m.publisher(),
	})
	m.shutdown = append(m.shutdown, m.front.Shutdown)
	return nil
}

func (m *mount) sessionServer(dial upstream.Dialer, lg *slog.Logger) *session.Server {
	s := session.New(session.Options{
		Dial:           dial,
		IdleTimeout:    m.cfg.SessionIdleTimeout.Duration,
		MaxSessions:    m.cfg.MaxSessions,
		RequestTimeout: m.g.cfg.Limits.UpstreamTimeout.Duration,
		Logger:         lg,
		Sessions:       telemetry.GaugeFor(m.g.metrics.Sessions, m.name),
		Streams:        telemetry.GaugeFor(m.g.metrics.Streams, m.name),
		TaskTTLMax:     m.g.cfg.Limits.TaskTTLMax.Duration,
	})
	m.shutdown = append(m.shutdown, s.Shutdown)
	return s
}

// childEnv builds a stdio child's environment: only PATH, HOME, LANG and
// what the configuration passes explicitly, never the gateway's secrets.
func childEnv(u config.Upstream, getenv func(string) string) []string {
	var env []string
	for _, k := range append([]string{"PATH", "HOME", "LANG", "TMPDIR"}, u.InheritEnv...) {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range u.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// upstreamCredential reads the gateway's own upstream credential.
func upstreamCredential(a *config.UpstreamAuth, getenv func(string) string) (http.Header, error) {
	h := http.Header{}
	if a == nil || a.Header == "" {
		return h, nil
	}
	v, err := config.ReadSecret("upstream_auth.value_env", a.ValueEnv, "upstream_auth.value_file", a.ValueFile, getenv)
	if err != nil {
		return nil, err
	}
	h.Set(a.Header, v)
	return h, nil
}

func (m *mount) close(ctx context.Context) error {
	var errs []error
	for _, f := range m.shutdown {
		errs = append(errs, f(ctx))
	}
	if v := m.verifier.Load(); v != nil {
		v.Close()
	}
	return errors.Join(errs...)
}

// builtinIssuers marks the built-in authorization server among issuers: it
// issues RFC 9068 at+jwt access tokens, so no other JWT of it passes as one.
func (g *Gateway) builtinIssuers(issuers []config.Issuer) []config.Issuer {
	if g.cfg.AuthorizationServer != "builtin" {
		return issuers
	}
	out := slices.Clone(issuers)
	for i := range out {
		if out[i].Issuer == g.cfg.PublicURL {
			out[i].RequireATJWT = true
		}
	}
	return out
}
