package authserver

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// idJAGClaims are the ID-JAG claims (draft-ietf-oauth-identity-assertion-
// authz-grant §3.1) this server reads.
type idJAGClaims struct {
	jwt.Claims
	ClientID string      `json:"client_id"`
	Resource stringOrSet `json:"resource"`
	Scope    string      `json:"scope"`
	Email    string      `json:"email"`
	AuthTime int64       `json:"auth_time"`
}

// stringOrSet is a claim that is one string or an array of strings.
type stringOrSet []string

func (v *stringOrSet) UnmarshalJSON(b []byte) error {
	var a jwt.Audience // the same shape, with the same decoder
	if err := a.UnmarshalJSON(b); err != nil {
		return errors.New("resource must be a string or an array of strings")
	}
	*v = stringOrSet(a)
	return nil
}

// idJAGGrant is the jwt-bearer grant with an ID-JAG (Enterprise-Managed
// Authorization §5; ID-JAG draft §4.4.1). In order: a trusted issuer; an
// authenticated confidential client the IdP entry allows; the DPoP proof;
// the signature by the IdP's keys; aud = our issuer; client_id = the
// authenticated client; times; the resource; the IdP entry's claim rules
// and scope mapping; and last the single-use jti. No refresh token
// (draft §4.4.3: the ID-JAG replaces it).
func (s *Server) idJAGGrant(w http.ResponseWriter, r *http.Request, a *assertion) {
	idp := s.trustedIdP(a.issuer())
	if idp == nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the ID-JAG's issuer "+strconv.Quote(a.issuer())+" is not a trusted identity provider (builtin.trusted_idps)")
		return
	}
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	if c.public() {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "ID-JAGs are accepted from confidential clients only (a secret or private_key_jwt)")
		return
	}
	if !slices.Contains(idp.ClientIDs, c.ID) {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "client "+strconv.Quote(c.ID)+" may not present ID-JAGs of "+idp.Issuer+" (builtin.trusted_idps client_ids)")
		return
	}
	jkt, ok := s.requestProof(w, r, c, "/token", false)
	if !ok {
		return
	}
	keys, err := s.issuerKeys(r.Context(), idp.Issuer, idp.JWKSURI, a.kid, idp.Fetch)
	if err != nil {
		w.Header().Set("Retry-After", "30")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the identity provider's keys could not be read: "+err.Error())
		return
	}
	var cl idJAGClaims
	if err := a.verify(keys, &cl); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "ID-JAG: "+err.Error())
		return
	}
	if msg := s.checkIDJAG(&cl, c, idp); msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "ID-JAG: "+msg)
		return
	}
	res, code, msg := s.idJAGResource(r, &cl)
	if msg != "" {
		oauthError(w, http.StatusBadRequest, code, msg)
		return
	}
	groups := claimStrings(a.claims[idp.GroupsClaim])
	if msg := idp.admits(cl.Email, groups); msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", msg) // a policy denial: RFC 6749 §5.2 has no access_denied at the token endpoint
		return
	}
	scopes, msg := idJAGScopes(r.PostForm.Get("scope"), cl.Scope, idp.allowed(res, groups))
	if msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", msg)
		return
	}
	if err := s.useOnce(r.Context(), idp.Issuer, "idjag", idp.Issuer, cl.ID, cl.Expiry.Time()); err != nil {
		replayError(w, err, "invalid_grant", "the ID-JAG")
		return
	}
	var authTime time.Time
	if cl.AuthTime > 0 {
		authTime = time.Unix(cl.AuthTime, 0)
	}
	src := *c
	src.source = &grantSource{Type: grantJWTBearer, Profile: profileIDJAG, Issuer: idp.Issuer}
	if s.issue(w, &src, cl.Subject, res.ID, scopes, jkt, authTime, "-") {
		s.markUsed(c)
		s.cfg.Log.Info("token issued", "grant_type", grantJWTBearer, "grant_profile", profileIDJAG, "idp", idp.Issuer,
			"subject", cl.Subject, "client_id", c.ID, "resource", res.ID, "scope", strings.Join(scopes, " "))
	}
}

func (s *Server) trustedIdP(iss string) *TrustedIdP {
	for i := range s.cfg.TrustedIdPs {
		if s.cfg.TrustedIdPs[i].Issuer == iss {
			return &s.cfg.TrustedIdPs[i]
		}
	}
	return nil
}

// checkIDJAG: the claims of §3.1 and the processing rules of §4.4.1.
func (s *Server) checkIDJAG(cl *idJAGClaims, c *client, idp *TrustedIdP) string {
	if !audienceIs(cl.Audience, s.cfg.Issuer, s.cfg.Issuer+"/") {
		return "aud must be this authorization server's issuer " + s.cfg.Issuer + " (one value)"
	}
	if cl.ClientID != c.ID {
		return "client_id " + strconv.Quote(cl.ClientID) + " is not the authenticated client " + strconv.Quote(c.ID)
	}
	if cl.Subject == "" {
		return "sub is missing"
	}
	if err := checkTimes(&cl.Claims, s.now(), idp.MaxLifetime); err != nil {
		return err.Error()
	}
	if cl.ID == "" {
		return "jti is missing (it is required, and single use)"
	}
	return ""
}

// idJAGResource: the resource the token is for — the request's resource
// parameter when given, which must be one of the ID-JAG's; else the
// ID-JAG's only one. It must be a resource of this server.
func (s *Server) idJAGResource(r *http.Request, cl *idJAGClaims) (*Resource, string, string) {
	if len(cl.Resource) == 0 {
		return nil, "invalid_grant", "ID-JAG: it names no resource; ask the IdP for one with resource = the MCP server"
	}
	want := r.PostForm.Get("resource")
	if want == "" {
		if len(cl.Resource) != 1 {
			return nil, "invalid_target", "the ID-JAG names several resources: choose one with the resource parameter"
		}
		want = cl.Resource[0]
	} else if !slices.ContainsFunc(cl.Resource, func(x string) bool { return sameResource(x, want) }) {
		return nil, "invalid_target", "resource " + strconv.Quote(want) + " is not one the ID-JAG names"
	}
	for i := range s.cfg.Resources {
		if sameResource(s.cfg.Resources[i].ID, want) {
			return &s.cfg.Resources[i], "", ""
		}
	}
	return nil, "invalid_grant", "ID-JAG: resource " + strconv.Quote(want) + " is not a protected resource of this authorization server"
}

func sameResource(a, b string) bool { return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/") }

// admits applies the IdP entry's claim rules (email domain, groups).
func (p *TrustedIdP) admits(email string, groups []string) string {
	if len(p.EmailDomains) > 0 {
		at := strings.LastIndexByte(email, '@')
		if at < 0 || !slices.Contains(p.EmailDomains, strings.ToLower(email[at+1:])) {
			return "the user's email is not in a domain this server admits from " + p.Issuer
		}
	}
	if len(p.Groups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(p.Groups, g) }) {
		return "the user is in none of the groups this server admits from " + p.Issuer
	}
	return ""
}

// allowed: the scope mapping — the scopes of res the rules give these
// groups, limited to the resource's own scopes.
func (p *TrustedIdP) allowed(res *Resource, groups []string) []string {
	var out []string
	for _, rule := range p.Scopes {
		if rule.Resource != "" && !sameResource(rule.Resource, res.ID) {
			continue
		}
		if len(rule.Groups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(rule.Groups, g) }) {
			continue
		}
		for _, sc := range rule.Scopes {
			if slices.Contains(res.Scopes, sc) && !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// idJAGScopes: requested (the scope parameter, default the ID-JAG's
// scope) must lie within the ID-JAG's scope and within allowed; an
// escalation is refused, not narrowed silently.
func idJAGScopes(requested, granted string, allowed []string) ([]string, string) {
	jag := strings.Fields(granted)
	want := strings.Fields(requested)
	if len(want) == 0 {
		want = jag
	}
	if len(want) == 0 {
		return nil, "neither the request nor the ID-JAG names a scope"
	}
	var out []string
	for _, sc := range want {
		switch {
		case !slices.Contains(jag, sc):
			return nil, "scope " + strconv.Quote(sc) + " is not in the ID-JAG's scope"
		case !slices.Contains(allowed, sc):
			return nil, "scope " + strconv.Quote(sc) + " is not granted to this user for this resource (builtin.trusted_idps scopes)"
		case !slices.Contains(out, sc):
			out = append(out, sc)
		}
	}
	return out, ""
}

// claimStrings reads a claim that is a string or an array of strings.
func claimStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
