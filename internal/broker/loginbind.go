package broker

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The browser login is bound to the party that may use the broker's
// credential (hole: a caller without the local token started a login,
// signed in as someone else and so swapped the identity the token holder's
// calls are made with):
//
//   - With a local token, GET /oauth/login needs the token (header) and
//     then only answers a one-time login link (ticket, 2 minutes, single
//     use); opening that link in a browser starts the flow. Without the
//     token or a live ticket the login is refused before anything starts.
//   - Every flow sets an HttpOnly, SameSite=Lax cookie holding a random
//     binding value, scoped to the remote's /oauth/ path and named after the
//     broker's port; /oauth/callback is passed on to the flow only with that
//     cookie (constant-time compare), so a code delivered by any other
//     browser never reaches the token endpoint or the vault. Lax, not
//     Strict: the authorization server's redirect back is a cross-site
//     top-level navigation, which Strict cookies do not follow.
//   - A login navigation from another site (Sec-Fetch-Site: cross-site or
//     same-site) is refused: web pages may not start flows.
//   - /oauth/status needs the local token like the MCP endpoint.

const (
	ticketTTL  = 2 * time.Minute
	maxTickets = 16
)

type ticket struct {
	rm      *Remote
	expires time.Time
}

// loginFlow is a browser login in progress.
type loginFlow struct {
	urls    chan string // the authorization URL, once
	binding string      // the cookie value the callback must carry
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (b *Broker) cookieName() string {
	_, port, _ := net.SplitHostPort(b.o.Addr)
	return "mcpgate_login_" + port
}

func oauthPath(rm *Remote) string { return strings.TrimSuffix(rm.Prefix, "/") + "/oauth/" }

// issueTicket returns a one-time login link for rm (the caller presented
// the local token).
func (b *Broker) issueTicket(rm *Remote, host string) (string, error) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, t := range b.tickets {
		if now.After(t.expires) {
			delete(b.tickets, k)
		}
	}
	if len(b.tickets) >= maxTickets {
		return "", fmt.Errorf("too many unused login links (%d); use one or wait %s", maxTickets, ticketTTL)
	}
	v := randomToken()
	b.tickets[v] = ticket{rm: rm, expires: now.Add(ticketTTL)}
	return (&url.URL{Scheme: "http", Host: host, Path: oauthPath(rm) + "login", RawQuery: url.Values{"ticket": {v}}.Encode()}).String(), nil
}

// takeTicket consumes a login link's ticket for rm.
func (b *Broker) takeTicket(rm *Remote, v string) bool {
	if v == "" {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, t := range b.tickets {
		if subtle.ConstantTimeCompare([]byte(k), []byte(v)) == 1 {
			delete(b.tickets, k)
			return t.rm == rm && time.Now().Before(t.expires)
		}
	}
	return false
}

// crossSite reports a request a web page of another site made the
// browser send.
func crossSite(r *http.Request) bool {
	s := r.Header.Get("Sec-Fetch-Site")
	return s != "" && s != "same-origin" && s != "none"
}

// authorizeLogin decides whether r may start a login for rm. It answers
// the request itself (and returns false) when it may not, or when it was
// the token holder asking for a login link.
func (b *Broker) authorizeLogin(w http.ResponseWriter, r *http.Request, rm *Remote) bool {
	if crossSite(r) {
		http.Error(w, "a login started by another site is refused; open the login link yourself", http.StatusForbidden)
		return false
	}
	if b.o.LocalToken == "" {
		return true
	}
	if t := r.URL.Query().Get("ticket"); t != "" {
		if b.takeTicket(rm, t) {
			return true
		}
		http.Error(w, "this login link is unknown, used or expired; ask the broker for a new one with the local token", http.StatusForbidden)
		return false
	}
	if r.Header.Get("X-Mcpgate-Token") != "" || r.Header.Get("Authorization") != "" {
		if !b.localTokenOK(r) {
			http.Error(w, "wrong local token", http.StatusUnauthorized)
			return false
		}
		link, err := b.issueTicket(rm, r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return false
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Open this one-time login link in your browser within 2 minutes:\n"+link+"\n")
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate-broker"`)
	http.Error(w, "this broker requires its local token to log in: get a one-time login link with\n"+
		"  curl -H \"X-Mcpgate-Token: $(cat TOKEN_FILE)\" http://"+r.Host+oauthPath(rm)+"login\n"+
		"and open it in your browser", http.StatusUnauthorized)
	return false
}

// bindCookie is the Set-Cookie binding a new flow to this browser.
func (b *Broker) bindCookie(w http.ResponseWriter, rm *Remote, binding string) {
	http.SetCookie(w, &http.Cookie{Name: b.cookieName(), Value: binding, Path: oauthPath(rm),
		MaxAge: int(b.o.LoginTimeout / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// callback passes the authorization response to the flow only when it
// comes back to the browser that started it.
func (b *Broker) callback(rm *Remote) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		flow := b.logins[rm]
		b.mu.Unlock()
		if flow == nil {
			http.Error(w, "no sign-in in progress; start the login again", http.StatusNotFound)
			return
		}
		c, err := r.Cookie(b.cookieName())
		if err != nil || flow.binding == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(flow.binding)) != 1 {
			b.o.Log.Warn("broker: refused an authorization response from a browser that did not start the login", "upstream", rm.URL)
			http.Error(w, "this sign-in was not started in this browser; the broker ignores it", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: b.cookieName(), Value: "", Path: oauthPath(rm), MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		rm.Callback.ServeHTTP(w, r)
	}
}
