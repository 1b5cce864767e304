package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
)

// The connect flow. A caller without a connection gets a connect URL
// (a ticket: random, single-use, short-lived, bound to the caller's issuer
// and subject). The browser that opens it must be signed in to the
// built-in authorization server as that same user — the MCP 2026-07-28
// elicitation text: "The MCP Server MUST verify the identity of the user
// who opens the URL before accepting information" — else it is refused
// and never reaches the upstream's authorization server (a phished link
// connects nobody's account to the attacker's gateway user). Then the
// gateway starts an authorization code flow with PKCE (PAR, DPoP as
// offered) and redirects; the callback must come back in the same user's
// browser session, with the flow's state (constant time) and RFC 9207 iss,
// once.
//
// Unauthenticated callers reach only the session cookie check (an HMAC):
// the store is read only for a signed-in user, and the tickets and flows
// there exist only for authenticated MCP callers, bounded per subject and
// in total (connectBudget).

// connectRequired is the error of a caller without a connection: the
// answer is a URL-mode elicitation (connect_answer.go).
type connectRequired struct {
	url      string
	upstream string
}

func (e *connectRequired) Error() string {
	return "connect your " + e.upstream + " account first: open " + e.url
}

// errConnectBusy: the upstream's connect flows in progress are at their
// bound (upstream_auth.oauth.max_pending).
var errConnectBusy = errors.New("too many account connections are in progress for this upstream: retry in a few minutes (upstream_auth.oauth.max_pending)")

// connectRequired issues a ticket for the caller and returns the error
// that carries its URL.
func (s *oauthSource) connectRequired(c credCaller) error {
	if c.p.Issuer != s.host.AccountIssuer() {
		return fmt.Errorf("connected accounts are for users of the built-in authorization server (this caller's issuer is %s): sign in through %s", c.p.Issuer, s.host.AccountIssuer())
	}
	id := randomToken()
	t := ticket{Issuer: c.p.Issuer, Subject: c.p.Subject, Upstream: s.m.name, Expires: time.Now().Add(s.connectTTL())}
	evicted, ok := s.flows.admit(owner(c.p), name("ticket", id), t.Expires)
	if !ok {
		return errConnectBusy
	}
	for _, old := range evicted {
		_ = s.store.kv.AccountDelete(bucketTickets, old)
	}
	if err := s.store.put(bucketTickets, name("ticket", id), t, s.connectTTL()); err != nil {
		return fmt.Errorf("storing the connect ticket: %w", err)
	}
	return &connectRequired{url: strings.TrimSuffix(s.m.g.cfg.PublicURL, "/") + connectPath + "?ticket=" + id, upstream: s.m.name}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// connectBudget bounds the connect flows (tickets and the authorizations
// they start) of one upstream on this replica: total in all, perSubject
// for one subject. A subject at its share gets a new ticket by giving up
// its oldest (its own earlier links stop working); the whole budget full
// refuses new tickets until some expire.
type connectBudget struct {
	total, perSubject int
	mu                sync.Mutex // guards by and n
	by                map[string][]budgetEntry
	n                 int
}

type budgetEntry struct {
	name    string
	expires time.Time
}

func newConnectBudget(total, perSubject int) *connectBudget {
	return &connectBudget{total: total, perSubject: min(perSubject, total), by: map[string][]budgetEntry{}}
}

// admit counts a new ticket for subject; evicted are the store names of
// the subject's tickets it replaces.
func (b *connectBudget) admit(subject, ticketName string, expires time.Time) (evicted []string, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.pruneLocked(now)
	list := b.by[subject]
	for len(list) >= b.perSubject {
		evicted = append(evicted, list[0].name)
		list = list[1:]
		b.n--
	}
	if b.n >= b.total {
		b.by[subject] = list
		return evicted, false
	}
	b.by[subject] = append(list, budgetEntry{name: ticketName, expires: expires})
	b.n++
	return evicted, true
}

// pruneLocked forgets expired entries (b.mu held).
func (b *connectBudget) pruneLocked(now time.Time) {
	for k, list := range b.by {
		kept := list[:0]
		for _, e := range list {
			if e.expires.After(now) {
				kept = append(kept, e)
			}
		}
		b.n -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(b.by, k)
		} else {
			b.by[k] = kept
		}
	}
}

// refreshLock is the cross-replica refresh lock of a connection when
// state.redis is configured (a no-op without it). A replica that finds it
// held waits for the holder's token rather than redeeming the refresh
// token a second time (which a rotating authorization server would take
// as reuse and end the grant).
func (s *oauthSource) refreshLock(ctx context.Context, key string) (func(), error) {
	r := s.m.g.redis
	if r == nil {
		return func() {}, nil
	}
	rk := r.Key("upcred", "refresh", key)
	deadline := time.Now().Add(refreshLockTTL)
	for {
		unlock, held, err := r.TryLock(ctx, rk, refreshLockTTL)
		if err != nil {
			return nil, err
		}
		if held {
			return unlock, nil
		}
		if time.Now().After(deadline) {
			return nil, errRefreshBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// connectPage answers the browser in the built-in server's page style.
func (s *oauthSource) connectPage(w http.ResponseWriter, status int, title, msg string) {
	s.host.AccountPage(w, status, title, msg, status >= 400)
}

// serveConnect opens a connect URL: same user, ticket taken once, then
// the redirect to the upstream's authorization endpoint.
func (s *oauthSource) serveConnect(w http.ResponseWriter, r *http.Request, t *ticket, user string) {
	if t.Issuer != s.host.AccountIssuer() || t.Subject != user {
		s.m.g.log.Warn("connect URL opened by another user", "upstream", s.m.name)
		s.connectPage(w, http.StatusForbidden, "Wrong account",
			"This connect link was made for another user. It is no longer valid. Retry in your application while signed in as yourself to get a new one.")
		return
	}
	p, err := s.begin(r.Context(), t)
	if err != nil {
		s.m.g.log.Warn("connect flow could not start", "upstream", s.m.name, "err", err)
		s.connectPage(w, http.StatusBadGateway, "Cannot connect", "The upstream's authorization server could not be reached or refused the request: "+err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, p.Auth.URL, http.StatusSeeOther)
}

// begin discovers the upstream's server, picks the client, and stores the
// pending authorization for the callback.
func (s *oauthSource) begin(ctx context.Context, t *ticket) (*pending, error) {
	d, err := s.discovery(ctx)
	if err != nil {
		return nil, err
	}
	bind, err := s.useDPoP(d.AS)
	if err != nil {
		return nil, err
	}
	var key *oauth.DPoPKey
	var keyDER []byte
	if bind {
		if key, err = oauth.NewDPoPKey(); err != nil {
			return nil, err
		}
		keyDER, _ = oauth.MarshalDPoPKey(key)
	}
	c, err := s.client(ctx, d, bind)
	if err != nil {
		return nil, err
	}
	ar := s.authRequest(d, c, key)
	auth, err := s.e.BeginAuthorization(ctx, ar, s.redirect)
	if err != nil {
		return nil, err
	}
	c.Secret = "" // a pre-registered secret comes from the configuration; a DCR one is kept in bucketClients
	if c.Kind == "dcr" {
		c.Secret = ar.Client.Secret
	}
	p := &pending{ticket: *t, Auth: *auth, Resource: d.Resource, AS: *d.AS, Client: *c, Scopes: ar.Scopes, DPoPKey: keyDER}
	ttl := time.Until(t.Expires)
	if ttl <= 0 {
		return nil, errors.New("the connect link expired")
	}
	if err := s.store.put(bucketPending, name("pending", auth.State), p, ttl); err != nil {
		return nil, err
	}
	return p, nil
}

// finish completes the callback of pending p for user: code, token,
// connection stored.
func (s *oauthSource) finish(ctx context.Context, p *pending, q map[string][]string) error {
	var key *oauth.DPoPKey
	if len(p.DPoPKey) > 0 {
		k, err := oauth.ParseDPoPKey(p.DPoPKey)
		if err != nil {
			return err
		}
		key = k
	}
	as := p.AS
	d := &oauth.Discovery{ServerURL: s.m.cfg.URL, Resource: p.Resource, AS: &as}
	ar := &oauth.AuthRequest{Discovery: d, Client: s.clientFor(p.Client), Scopes: p.Scopes, NoResource: s.cfg.NoResource, DPoP: key}
	tok, err := s.e.FinishAuthorization(ctx, ar, &p.Auth, q)
	if err != nil {
		return err
	}
	conn := &connection{Issuer: p.Issuer, Subject: p.Subject, Upstream: p.Upstream, Resource: p.Resource, AS: p.AS,
		Client: p.Client, DPoPKey: p.DPoPKey, Token: *tok, Created: time.Now()}
	return s.save(conn)
}
