package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
)

// The gateway as a client of the upstream's authorization server: which
// client (pre-registered, its own Client ID Metadata Document, or one it
// registered and keeps, sealed, per issuer), and the refresh of a stored
// connection.

const bucketClients = "upstream_clients" // DCR registrations, per issuer

// client returns the gateway's client at d's authorization server.
func (s *oauthSource) client(ctx context.Context, d *oauth.Discovery, dpopBound bool) (*oauth.Client, error) {
	as := d.AS
	reg := s.cfg.Registration
	if reg == "" {
		switch {
		case s.cfg.ClientID != "":
			reg = "preregistered"
		case as.CIMDSupported && strings.HasPrefix(s.m.g.cfg.PublicURL, "https://"):
			reg = "cimd"
		default:
			reg = "dcr"
		}
	}
	switch reg {
	case "preregistered":
		return oauth.PreRegistered(as, s.cfg.ClientID, s.secret, nil, s.cfg.TokenEndpointAuthMethod), nil
	case "cimd":
		if !as.CIMDSupported {
			return nil, fmt.Errorf("upstream_auth.oauth.registration is cimd, but %s does not support Client ID Metadata Documents", as.Issuer)
		}
		return oauth.MetadataDocumentClient(as, s.clientDocURL())
	}
	return s.registered(ctx, as, dpopBound)
}

// regMu serialises registrations of this process, so that concurrent
// first connections register one client.
var regMu sync.Mutex

// registered is the stored DCR client for the issuer, registering one
// when there is none (or it expired).
func (s *oauthSource) registered(ctx context.Context, as *oauth.ServerMetadata, dpopBound bool) (*oauth.Client, error) {
	regMu.Lock()
	defer regMu.Unlock()
	key := name("client", as.Issuer, s.redirect)
	var c oauth.Client
	if found, err := s.store.get(bucketClients, key, &c); err == nil && found && c.Issuer == as.Issuer &&
		(c.ExpiresAt.IsZero() || c.ExpiresAt.After(time.Now().Add(time.Hour))) {
		return &c, nil
	}
	nc, keyDER, err := s.e.Register(ctx, as, s.redirect, dpopBound)
	if err != nil {
		return nil, err
	}
	if keyDER != nil {
		return nil, fmt.Errorf("%s registers clients with private_key_jwt only, which connected accounts do not support: pre-register a client (client_id, client_secret_file)", as.Issuer)
	}
	if err := s.store.put(bucketClients, key, nc, 0); err != nil {
		return nil, fmt.Errorf("storing the client registration: %w", err)
	}
	return nc, nil
}

func (s *oauthSource) clientDocURL() string {
	return strings.TrimSuffix(s.m.g.cfg.PublicURL, "/") + clientDocPath
}

// serveClientDoc serves the gateway's Client ID Metadata Document.
func (s *oauthSource) serveClientDoc(w http.ResponseWriter, r *http.Request) {
	doc, err := oauth.ClientMetadataDocument(s.clientDocURL(), []string{s.redirect})
	if err != nil {
		http.Error(w, "no client metadata document: the gateway's public_url is not https", http.StatusNotFound)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	m["application_type"] = "web" // the redirect is the gateway's https callback
	doc, _ = json.Marshal(m)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(doc)
}

// flights single-flights work per key in this process.
type flights struct {
	mu sync.Mutex // guards m
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	conn *connection
	err  error
}

// do runs f once for key at a time; concurrent callers wait for its result.
func (fs *flights) do(key string, f func() (*connection, error)) (*connection, error) {
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	if fl := fs.m[key]; fl != nil {
		fs.mu.Unlock()
		<-fl.done
		return fl.conn, fl.err
	}
	fl := &flight{done: make(chan struct{})}
	fs.m[key] = fl
	fs.mu.Unlock()
	fl.conn, fl.err = f()
	fs.mu.Lock()
	delete(fs.m, key)
	fs.mu.Unlock()
	close(fl.done)
	return fl.conn, fl.err
}

// refresh renews conn's token, once at a time per connection: a caller
// that waited adopts the token the first one got. Across replicas a
// short Redis lock does the same (refreshLock); the record is read again
// under it, so a token another replica renewed is adopted.
func (s *oauthSource) refresh(ctx context.Context, conn *connection) (*connection, error) {
	key := s.accountName(conn.Issuer, conn.Subject)
	return s.refreshing.do(key, func() (*connection, error) {
		unlock, err := s.refreshLock(ctx, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		cur, err := s.load(conn.Issuer, conn.Subject)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, fmt.Errorf("%w: the connection was removed", oauth.ErrLoginRequired)
		}
		if !cur.Token.Stale(time.Now(), s.refreshSkew()) {
			return cur, nil
		}
		return s.renew(ctx, cur)
	})
}

// renew redeems cur's refresh token and stores the result. A refused
// refresh token deletes the connection: the user connects again.
func (s *oauthSource) renew(ctx context.Context, cur *connection) (*connection, error) {
	if cur.Token.RefreshToken == "" {
		_ = s.store.kv.AccountDelete(bucketAccounts, s.accountName(cur.Issuer, cur.Subject))
		return nil, fmt.Errorf("%w: the upstream token expired and no refresh token was issued", oauth.ErrLoginRequired)
	}
	var key *oauth.DPoPKey
	if cur.Token.DPoP() {
		k, err := oauth.ParseDPoPKey(cur.DPoPKey)
		if err != nil {
			return nil, err
		}
		key = k
	}
	resource := cur.Resource
	if s.cfg.NoResource {
		resource = ""
	}
	t, err := s.e.Refresh(ctx, &cur.AS, s.clientFor(cur.Client), &cur.Token, resource, key)
	if err != nil {
		if oauth.IsInvalidGrant(err) || oauth.IsInvalidClient(err) {
			_ = s.store.kv.AccountDelete(bucketAccounts, s.accountName(cur.Issuer, cur.Subject))
			return nil, fmt.Errorf("%w: the upstream refused the refresh token", oauth.ErrLoginRequired)
		}
		return nil, fmt.Errorf("refreshing the upstream token at %s: %w", cur.AS.Issuer, err)
	}
	next := *cur
	next.Token, next.Refreshed = *t, time.Now()
	if err := s.save(&next); err != nil {
		return nil, fmt.Errorf("storing the refreshed upstream token: %w", err)
	}
	return &next, nil
}

// refreshLockTTL bounds how long one replica holds a connection's refresh
// lock (longer than a token request may take: engine timeout 30s).
const refreshLockTTL = 35 * time.Second

// errRefreshBusy: another replica is refreshing this connection and did
// not finish in time.
var errRefreshBusy = errors.New("another gateway replica is refreshing this upstream token: retry in a few seconds")
