package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Per-user secrets for stdio children (issue 15, part 5). A command
// upstream runs one child per session, started for the caller whose
// request created the session; upstream_auth.child_env names the
// environment variable in which that child gets the caller's per-caller
// credential (the raw token, not a header). A child is only ever started
// with its own caller's value: the value is computed per request from the
// authenticated principal, and the session (or task host) the child
// serves is bound to that caller. The value never goes into argv or logs.
//
// On refresh: a running process's environment cannot change, so when the
// caller's credential differs from the one a child of theirs was started
// with (it was refreshed), the gateway restarts: it ends every such child
// before the request is forwarded. The request answers that the session
// is gone, and the client starts a new session, whose child gets the new
// value. No other child is touched.

// An envSource is a credential source that can also yield the bare
// credential for a child's environment. The federated token and token
// exchange implement it; connected accounts can implement it the same
// way and be named by child_env.
type envSource interface {
	credentialSource
	// envValue returns the caller's credential as a child receives it
	// (the bare token). An error refuses the request, as addTo's does.
	envValue(ctx context.Context, c credCaller) (string, error)
}

// childCredential is the child_env of a stdio mount and the children it
// started, by owner, with the fingerprint of the value each got.
type childCredential struct {
	name string
	src  envSource

	mu   sync.Mutex // guards live
	live map[string]map[*envConn]struct{}
}

// setChildCredential makes src the source of the child_env variable name.
func (m *mount) setChildCredential(name string, src envSource) error {
	if m.childCred != nil {
		return errors.New("upstream_auth.child_env: only one per-caller mode may supply a child's environment")
	}
	m.childCred = &childCredential{name: name, src: src, live: map[string]map[*envConn]struct{}{}}
	return nil
}

// childEnv is the pipeline step (after credentials) that computes the
// child environment of this caller and ends their children started with
// an older value.
func (x *exchange) childEnv() bool {
	cc := x.m.childCred
	if cc == nil {
		return true
	}
	v, err := cc.src.envValue(x.r.Context(), credCaller{p: x.p, r: x.r, era: x.era()})
	if errors.Is(err, errHopKeepsChild) {
		return true // the child on this replica keeps the value it started with
	}
	if err == nil && strings.ContainsAny(v, "\x00\r\n") {
		err = errors.New("the credential holds a character an environment variable cannot carry")
	}
	if err != nil {
		x.refuseCredential(err)
		return false
	}
	x.upEnv = []string{cc.name + "=" + v}
	cc.restartStale(x.ownerKey(), fingerprint(v))
	return true
}

// errHopKeepsChild: a request another replica forwarded (a hop) carries
// no caller token to compute a value from; it is served by the child this
// replica started for the caller's direct request, which keeps its value.
var errHopKeepsChild = errors.New("a forwarded request carries no caller token")

func fingerprint(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// dialer wraps the stdio dialer: each child it starts is remembered with
// its owner and the fingerprint of its value (never the value).
func (cc *childCredential) dialer(next upstream.Dialer) upstream.Dialer {
	return func(ctx context.Context, c upstream.Caller) (upstream.Conn, error) {
		conn, err := next(ctx, c)
		if err != nil {
			return nil, err
		}
		e := &envConn{Conn: conn, cc: cc, owner: c.Owner, fp: cc.fingerprintOf(c.Env)}
		cc.mu.Lock()
		if cc.live[c.Owner] == nil {
			cc.live[c.Owner] = map[*envConn]struct{}{}
		}
		cc.live[c.Owner][e] = struct{}{}
		cc.mu.Unlock()
		return e, nil
	}
}

func (cc *childCredential) fingerprintOf(env []string) string {
	prefix := cc.name + "="
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, prefix); ok {
			return fingerprint(v)
		}
	}
	return ""
}

// restartStale ends owner's children whose value is not fp. They are
// closed before the request that found the new value is forwarded.
func (cc *childCredential) restartStale(owner, fp string) {
	var stale []*envConn
	cc.mu.Lock()
	for e := range cc.live[owner] {
		if e.fp != fp {
			stale = append(stale, e)
		}
	}
	cc.mu.Unlock()
	for _, e := range stale {
		_ = e.Close()
	}
}

func (cc *childCredential) forget(e *envConn) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.live[e.owner], e)
	if len(cc.live[e.owner]) == 0 {
		delete(cc.live, e.owner)
	}
}

// children is how many children of owner are running (tests).
func (cc *childCredential) children(owner string) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.live[owner])
}

// envConn is a child started with a per-caller value.
type envConn struct {
	upstream.Conn
	cc        *childCredential
	owner, fp string
}

func (e *envConn) Close() error {
	e.cc.forget(e)
	return e.Conn.Close()
}

// wrapChildDial is the stdio dialer of the mount: with child_env, the
// children are tracked for restarts.
func (m *mount) wrapChildDial(d upstream.Dialer) upstream.Dialer {
	if m.childCred == nil {
		return d
	}
	return m.childCred.dialer(d)
}
