package gateway

import (
	"net/http"
	"time"
)

// connectRouter serves the connect endpoints for every upstream with
// connected accounts: a ticket or pending flow names its upstream only
// inside its sealed value, so each is opened with the sources' keys until
// one opens it.
type connectRouter struct {
	g       *Gateway
	sources []*oauthSource
}

// connectRoutes returns the router, nil when no upstream uses
// upstream_auth.oauth.
func (g *Gateway) connectRoutes() *connectRouter {
	var srcs []*oauthSource
	for _, m := range g.mounts {
		for _, s := range m.credSources {
			if o, ok := s.(*oauthSource); ok {
				srcs = append(srcs, o)
			}
		}
	}
	if len(srcs) == 0 {
		return nil
	}
	return &connectRouter{g: g, sources: srcs}
}

func (cr *connectRouter) register(mux *http.ServeMux) {
	mux.Handle("GET "+connectPath, noBody(http.HandlerFunc(cr.connect)))
	mux.Handle("GET "+callbackPath, noBody(http.HandlerFunc(cr.callback)))
	mux.Handle("GET "+accountsPath, noBody(http.HandlerFunc(cr.accountsList)))
	mux.Handle("POST "+accountsPath, http.HandlerFunc(cr.accountsDisconnect))
	mux.Handle("GET "+clientDocPath, noBody(http.HandlerFunc(cr.sources[0].serveClientDoc)))
}

// signedIn is the built-in server's user of the browser, or answers 401.
func (cr *connectRouter) signedIn(w http.ResponseWriter, r *http.Request) (string, bool) {
	src := cr.sources[0]
	user := src.host.BrowserUser(r)
	if user == "" {
		src.connectPage(w, http.StatusUnauthorized, "Sign in first",
			"Connecting an account needs you signed in to this gateway in this browser, as the user who asked. Sign in to an application through this gateway in this browser, then open the link again.")
		return "", false
	}
	return user, true
}

// connect opens a connect URL.
func (cr *connectRouter) connect(w http.ResponseWriter, r *http.Request) {
	user, ok := cr.signedIn(w, r)
	if !ok {
		return
	}
	id := r.URL.Query().Get("ticket")
	key := name("ticket", id)
	var raw []byte
	var err error
	if len(id) == 43 {
		raw, err = cr.sources[0].store.kv.AccountTake(bucketTickets, key)
	}
	for _, s := range cr.sources {
		var t ticket
		if err != nil || raw == nil {
			break
		}
		if s.store.open(bucketTickets, key, raw, &t) != nil || t.Upstream != s.m.name {
			continue
		}
		if time.Now().After(t.Expires) {
			break
		}
		s.serveConnect(w, r, &t, user)
		return
	}
	cr.sources[0].connectPage(w, http.StatusGone, "Link not valid",
		"This connect link was already used, has expired, or is not one of this gateway's. Retry in your application to get a new one.")
}

// callback is the upstream authorization server's redirect.
func (cr *connectRouter) callback(w http.ResponseWriter, r *http.Request) {
	user, ok := cr.signedIn(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	key := name("pending", state)
	var raw []byte
	var err error
	if len(state) == 43 {
		raw, err = cr.sources[0].store.kv.AccountTake(bucketPending, key)
	}
	for _, s := range cr.sources {
		var p pending
		if err != nil || raw == nil {
			break
		}
		if s.store.open(bucketPending, key, raw, &p) != nil || p.Upstream != s.m.name {
			continue
		}
		if p.Issuer != s.host.AccountIssuer() || p.Subject != user {
			s.m.g.log.Warn("connect callback in another user's browser", "upstream", s.m.name)
			s.connectPage(w, http.StatusForbidden, "Wrong account", "This authorization was started by another user; it was discarded.")
			return
		}
		if err := s.finish(r.Context(), &p, q); err != nil {
			s.m.g.log.Warn("connect callback refused", "upstream", s.m.name, "err", err)
			s.connectPage(w, http.StatusBadRequest, "Not connected", err.Error())
			return
		}
		s.m.g.log.Info("account connected", "upstream", s.m.name)
		s.connectPage(w, http.StatusOK, "Account connected",
			"Your "+s.m.name+" account is connected. You can close this tab and return to your application; retry what you were doing.")
		return
	}
	cr.sources[0].connectPage(w, http.StatusBadRequest, "Not connected",
		"This authorization response does not belong to a connection in progress (already used, expired, or forged). Retry in your application.")
}
