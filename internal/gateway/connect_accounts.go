package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The "Connected accounts" page: the signed-in user's connections (one
// per upstream with upstream_auth.oauth), each with a Disconnect form.
// Disconnecting revokes the refresh token and then the access token at the
// upstream's server (RFC 7009) and deletes the connection — also when the
// revocation fails, which the page reports (the user can then revoke at
// the provider). The form is bound to the user by an HMAC under the
// upstream's token key and refused from another origin; the session
// cookie is SameSite=Lax, so a cross-site POST carries none.

const accountsPath = "/connect/accounts"

// accountsList answers GET /connect/accounts.
func (cr *connectRouter) accountsList(w http.ResponseWriter, r *http.Request) {
	user, ok := cr.signedIn(w, r)
	if !ok {
		return
	}
	var rows [][4]string
	for _, s := range cr.sources {
		c, err := s.load(s.host.AccountIssuer(), user)
		if err != nil || c == nil {
			continue
		}
		exp := "unknown"
		if !c.Token.Expiry.IsZero() {
			exp = c.Token.Expiry.UTC().Format(time.RFC3339)
		}
		rows = append(rows, [4]string{s.m.name, strings.Join(c.Token.Scopes, " "), exp, c.Created.UTC().Format(time.RFC3339)})
	}
	cr.sources[0].host.AccountListPage(w, user, accountsPath, cr.csrf(user), rows)
}

// csrf is the disconnect form's value for user.
func (cr *connectRouter) csrf(user string) string {
	m := hmac.New(sha256.New, cr.sources[0].csrfKey)
	m.Write([]byte("accounts\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}

// accountsDisconnect answers POST /connect/accounts.
func (cr *connectRouter) accountsDisconnect(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	user, ok := cr.signedIn(w, r)
	if !ok {
		return
	}
	src := cr.sources[0]
	if !sameOrigin(r, cr.g.cfg.PublicURL) || r.ParseForm() != nil ||
		subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(cr.csrf(user))) != 1 {
		src.connectPage(w, http.StatusForbidden, "Refused", "The form did not come from this gateway (CSRF protection).")
		return
	}
	for _, s := range cr.sources {
		if s.m.name != r.PostForm.Get("upstream") {
			continue
		}
		err := s.disconnect(r.Context(), user)
		switch {
		case errors.Is(err, errNotConnected):
			s.connectPage(w, http.StatusNotFound, "Not connected", "There is no connected account for "+s.m.name+".")
		case err != nil:
			s.connectPage(w, http.StatusOK, "Disconnected", "The connection to "+s.m.name+" was deleted, but the provider did not confirm the revocation ("+err.Error()+"); you can also revoke the access at the provider.")
		default:
			s.connectPage(w, http.StatusOK, "Disconnected", "Your "+s.m.name+" account is disconnected and its tokens were revoked.")
		}
		return
	}
	src.connectPage(w, http.StatusNotFound, "Not connected", "No such MCP server.")
}

var errNotConnected = errors.New("no connected account")

// disconnect revokes the user's tokens at the upstream's server (when it
// has a revocation endpoint) and deletes the connection.
func (s *oauthSource) disconnect(ctx context.Context, user string) error {
	issuer := s.host.AccountIssuer()
	c, err := s.load(issuer, user)
	if err != nil {
		return err
	}
	if c == nil {
		return errNotConnected
	}
	var errs []error
	if c.AS.RevocationEndpoint == "" {
		errs = append(errs, errors.New("the provider names no revocation endpoint"))
	} else {
		cl := s.clientFor(c.Client)
		if c.Token.RefreshToken != "" {
			if err := s.e.Revoke(ctx, &c.AS, cl, c.Token.RefreshToken, "refresh_token"); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.e.Revoke(ctx, &c.AS, cl, c.Token.AccessToken, "access_token"); err != nil && !strings.Contains(err.Error(), "unsupported_token_type") {
			errs = append(errs, err)
		}
	}
	if err := s.store.kv.AccountDelete(bucketAccounts, s.accountName(issuer, user)); err != nil {
		return err
	}
	s.m.g.log.Info("account disconnected", "upstream", s.m.name, "revoked", len(errs) == 0 && c.AS.RevocationEndpoint != "")
	return errors.Join(errs...)
}

// sameOrigin: the request's Origin, when it names one, is the gateway's
// public origin. A form on the gateway's own pages (Referrer-Policy:
// no-referrer) is sent with Origin "null" or none; those rely on the form
// value and the SameSite=Lax session cookie, which a cross-site POST lacks.
func sameOrigin(r *http.Request, public string) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return true
	}
	pu, err := url.Parse(public)
	u, err2 := url.Parse(o)
	return err == nil && err2 == nil && strings.EqualFold(u.Scheme, pu.Scheme) && strings.EqualFold(u.Host, pu.Host)
}
