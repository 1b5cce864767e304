package authserver

import (
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// What the gateway's connected accounts (upstream_auth.oauth) need from
// the built-in server: who is signed in in the browser that opens a
// connect URL (the signed session cookie, valid only with the browser's
// binding cookie: see session), a place for the encrypted upstream tokens
// and flows that every replica sharing the store sees (bbolt, or
// PostgreSQL with builtin.store_env), and the server's page style.

// accountBucketPrefix is the prefix of every bucket the gateway may use:
// the server's own state (clients, codes, refresh tokens, keys) stays out
// of its reach.
const accountBucketPrefix = "upstream_"

var errAccountBucket = errors.New("connected accounts use buckets named upstream_*")

// BrowserUser is the user signed in to this server in the browser that
// sent r ("" when nobody is, or the session belongs to another browser).
func (s *Server) BrowserUser(r *http.Request) string { return s.session(r) }

// AccountIssuer is the issuer whose users BrowserUser names.
func (s *Server) AccountIssuer() string { return s.cfg.Issuer }

// AccountPut, AccountGet, AccountTake, AccountDelete and AccountList
// reach the server's store in the connected-account buckets.
func (s *Server) AccountPut(bucket, key string, v []byte, ttl time.Duration) error {
	if !strings.HasPrefix(bucket, accountBucketPrefix) {
		return errAccountBucket
	}
	return s.cfg.Store.Put(bucket, key, v, ttl)
}

func (s *Server) AccountGet(bucket, key string) ([]byte, error) {
	if !strings.HasPrefix(bucket, accountBucketPrefix) {
		return nil, errAccountBucket
	}
	return s.cfg.Store.Get(bucket, key)
}

func (s *Server) AccountTake(bucket, key string) ([]byte, error) {
	if !strings.HasPrefix(bucket, accountBucketPrefix) {
		return nil, errAccountBucket
	}
	return s.cfg.Store.Take(bucket, key)
}

func (s *Server) AccountDelete(bucket, key string) error {
	if !strings.HasPrefix(bucket, accountBucketPrefix) {
		return errAccountBucket
	}
	return s.cfg.Store.Delete(bucket, key)
}

func (s *Server) AccountList(bucket string) (map[string][]byte, error) {
	if !strings.HasPrefix(bucket, accountBucketPrefix) {
		return nil, errAccountBucket
	}
	return s.cfg.Store.List(bucket)
}

func init() {
	template.Must(pages.New("notice").Parse(`<h1 id="title">{{.Title}}</h1><p><bdi>{{.Error}}</bdi></p>`))
	template.Must(pages.New("accounts").Parse(`<h1 id="title">Connected accounts</h1>
<p>Signed in as <strong><bdi>{{.User}}</bdi></strong>. These MCP servers reach their service with your own account.</p>
{{if not .Accounts}}<p class="note">No connected accounts.</p>{{end}}
{{range .Accounts}}<dl><dt>MCP server</dt><dd><bdi>{{.Upstream}}</bdi></dd>
<dt>Permissions</dt><dd>{{if .Scopes}}<bdi>{{.Scopes}}</bdi>{{else}}basic access{{end}}</dd>
<dt>Token expires</dt><dd>{{.Expires}}</dd><dt>Connected</dt><dd>{{.Connected}}</dd></dl>
<form method="post" action="{{$.Action}}"><input type="hidden" name="upstream" value="{{.Upstream}}"><input type="hidden" name="csrf" value="{{$.CSRF}}">
<div class="actions"><button class="secondary" type="submit">Disconnect</button></div></form>{{end}}`))
}

// AccountRow is one connected account as the page shows it.
type AccountRow struct{ Upstream, Scopes, Expires, Connected string }

// AccountListPage writes the "Connected accounts" page of user: each row
// (upstream, scopes, token expiry, connected at: plain strings, so that
// the gateway needs no type of this package) with a disconnect form
// posting upstream and csrf to action.
func (s *Server) AccountListPage(w http.ResponseWriter, user, action, csrf string, rows [][4]string) {
	shown := make([]AccountRow, len(rows))
	for i, r := range rows {
		shown[i] = AccountRow{Upstream: display(r[0]), Scopes: displayN(r[1], 600), Expires: display(r[2]), Connected: display(r[3])}
	}
	render(w, http.StatusOK, "accounts", pageData{Title: "Connected accounts", User: user, Action: action, CSRF: csrf, Accounts: shown})
}

// AccountPage writes a page of the connect flow in the server's style and
// with its security headers; failed says whether it reports a failure.
func (s *Server) AccountPage(w http.ResponseWriter, status int, title, msg string, failed bool) {
	if failed {
		errorPage(w, status, title, msg)
		return
	}
	render(w, status, "notice", pageData{Title: title, Error: msg})
}
