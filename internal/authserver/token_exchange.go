package authserver

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
)

// RFC 8693 (OAuth 2.0 Token Exchange, January 2020) identifiers.
const (
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

const (
	// maxSubjectTokenBytes bounds the subject_token verified per request;
	// this server's access tokens are well under 2 KiB.
	maxSubjectTokenBytes = 8 << 10
	// maxActDepth bounds the delegation chain (nested act claims) a token
	// may carry: each exchange adds one, and a chain exchanged in a loop
	// must not grow tokens without end.
	maxActDepth = 5
)

// actor is an RFC 8693 §4.1 act claim: "The outermost act claim
// represents the current actor while nested act claims represent prior
// actors. The least recent actor is the most deeply nested." Sub is the
// actor's client_id.
type actor struct {
	Sub string `json:"sub"`
	Act *actor `json:"act,omitempty"`
}

func (a *actor) depth() int {
	n := 0
	for ; a != nil; a = a.Act {
		n++
	}
	return n
}

// tokenExchange is the RFC 8693 grant for this server's own access
// tokens: a confidential client that may use the grant presents a user's
// access token (subject_token) and gets one for another of this server's
// resources, with at most the subject token's scopes (and its own), no
// longer-lived than the subject token, naming itself as the actor (act).
// Refusals are RFC 6749 §5.2 errors; "If ... the subject_token ... [is]
// invalid for any reason, or [is] unacceptable based on policy ... The
// value of the error parameter MUST be the invalid_request error code"
// (RFC 8693 §2.2.2); an unknown target is invalid_target.
func (s *Server) tokenExchange(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	if c.public() {
		s.exchangeRefused(w, c, "unauthorized_client", "the token exchange grant needs a confidential client")
		return
	}
	f := r.PostForm
	subj, msg := s.exchangeSubject(f)
	if msg != "" {
		s.exchangeRefused(w, c, "invalid_request", msg)
		return
	}
	res, msg := s.exchangeTarget(f)
	if msg != "" {
		s.exchangeRefused(w, c, "invalid_target", msg)
		return
	}
	scopes, msg := exchangeScopes(c, subj, res, strings.Fields(f.Get("scope")))
	if msg != "" {
		s.exchangeRefused(w, c, "invalid_scope", msg)
		return
	}
	resp, err := s.exchangedToken(c, subj, res, scopes, jkt)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "signing the token failed")
		return
	}
	s.cfg.Log.Info("token exchanged", "client_id", c.ID, "user", subj.Subject, "subject_client_id", subj.ClientID,
		"resource", res.ID, "scope", strings.Join(scopes, " "), "act_depth", subj.Act.depth()+1)
	writeJSON(w, http.StatusOK, resp)
}

// exchangeRefused answers and logs a refused exchange.
func (s *Server) exchangeRefused(w http.ResponseWriter, c *client, code, desc string) {
	s.cfg.Log.Warn("token exchange refused", "client_id", c.ID, "err", code, "reason", desc)
	oauthError(w, http.StatusBadRequest, code, desc)
}

// exchangeSubject checks the request's subject token: one of this
// server's access tokens (at+jwt, this issuer, signed by its key, not
// expired, not revoked), of the access token type, without an actor
// token, and with a delegation chain that may grow by one.
func (s *Server) exchangeSubject(f url.Values) (*accessClaims, string) {
	switch {
	case len(f["subject_token"]) != 1 || f.Get("subject_token") == "":
		return nil, "send exactly one subject_token"
	case f.Get("subject_token_type") != tokenTypeAccessToken:
		return nil, "subject_token_type must be " + tokenTypeAccessToken + ": this server exchanges its own access tokens"
	case f.Get("actor_token") != "" || f.Get("actor_token_type") != "":
		return nil, "actor_token is not supported: the actor is the authenticated client"
	case len(f.Get("subject_token")) > maxSubjectTokenBytes:
		return nil, "the subject_token is larger than any access token of this server"
	}
	if t := f.Get("requested_token_type"); t != "" && t != tokenTypeAccessToken {
		return nil, "requested_token_type must be " + tokenTypeAccessToken
	}
	subj, ok := s.parseAccess(f.Get("subject_token"))
	if !ok {
		return nil, "the subject_token is not an active access token of this server (unknown, expired or revoked)"
	}
	if subj.Act.depth() >= maxActDepth {
		return nil, "the subject_token's delegation chain is already " + strconv.Itoa(maxActDepth) + " actors long"
	}
	return subj, ""
}

// exchangeTarget is the resource the token is asked for: one resource
// (RFC 8707) or audience, naming one of this server's resources or
// exchange resources. There is no default: an exchanged token is always
// for a target the client named.
func (s *Server) exchangeTarget(f url.Values) (*Resource, string) {
	if len(f["resource"]) > 1 || len(f["audience"]) > 1 {
		return nil, "name one target: one resource or audience per exchange"
	}
	res, aud := f.Get("resource"), f.Get("audience")
	if res != "" && aud != "" && strings.TrimSuffix(res, "/") != strings.TrimSuffix(aud, "/") {
		return nil, "resource and audience name different targets"
	}
	id := res
	if id == "" {
		id = aud
	}
	if id == "" {
		return nil, "name the target with resource or audience"
	}
	for _, list := range [][]Resource{s.cfg.Resources, s.cfg.ExchangeResources} {
		for i, r := range list {
			if r.ID == id || strings.TrimSuffix(r.ID, "/") == strings.TrimSuffix(id, "/") {
				return &list[i], ""
			}
		}
	}
	return nil, "unknown target " + strconv.Quote(clipText(id, 200)) + ": not a resource of this server"
}

// exchangeScopes are the scopes of the exchanged token: those asked for
// (all available when none are), each of which must be in the subject
// token, among the target's scopes and, for a client with a scope list,
// in it. An exchange never adds a scope.
func exchangeScopes(c *client, subj *accessClaims, res *Resource, want []string) ([]string, string) {
	have := strings.Fields(subj.Scope)
	allowed := slices.DeleteFunc(slices.Clone(have), func(sc string) bool {
		return !slices.Contains(res.Scopes, sc) || (len(c.Scopes) > 0 && !slices.Contains(c.Scopes, sc))
	})
	if len(want) == 0 {
		if len(allowed) == 0 {
			return nil, "none of the subject token's scopes is a scope of this target for this client"
		}
		return allowed, ""
	}
	var out []string
	for _, sc := range want {
		switch {
		case !slices.Contains(have, sc):
			return nil, "scope " + strconv.Quote(clipText(sc, 100)) + " is not in the subject token: an exchange cannot add scopes"
		case !slices.Contains(allowed, sc):
			return nil, "scope " + strconv.Quote(clipText(sc, 100)) + " is not available for this target and client"
		case !slices.Contains(out, sc):
			out = append(out, sc)
		}
	}
	return out, ""
}

// exchangedToken signs the issued token and builds the RFC 8693 §2.2.1
// answer: the subject's user, the exchanging client as client_id and
// current actor (nesting the subject token's actors), the target as aud,
// and an expiry no later than the subject token's. No refresh token: a
// new exchange needs a live subject token.
func (s *Server) exchangedToken(c *client, subj *accessClaims, res *Resource, scopes []string, jkt string) (map[string]any, error) {
	now := s.now()
	exp := now.Add(s.cfg.AccessTokenTTL)
	if e := subj.Expiry.Time(); e.Before(exp) {
		exp = e
	}
	cl := accessClaims{Claims: jwt.Claims{Issuer: s.cfg.Issuer, Subject: subj.Subject, Audience: jwt.Audience{res.ID}, ID: randomID(16),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp)},
		ClientID: c.ID, Scope: strings.Join(scopes, " "), AuthTime: subj.AuthTime, Act: &actor{Sub: c.ID, Act: subj.Act}}
	tokenType := "Bearer"
	if jkt != "" {
		cl.Cnf, tokenType = map[string]string{"jkt": jkt}, "DPoP"
	}
	at, err := s.signAccess(cl)
	if err != nil {
		return nil, err
	}
	return map[string]any{"access_token": at, "issued_token_type": tokenTypeAccessToken, "token_type": tokenType,
		"expires_in": max(1, int(exp.Sub(now).Seconds())), "scope": cl.Scope}, nil
}

// clipText shortens client-chosen text quoted in an error description.
func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
