package authserver

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// workloadGrant is the jwt-bearer grant with a workload JWT (MCP Workload
// Identity Federation, draft): no client id or secret; the JWT is the
// credential. In order: a trusted workload issuer; the signature by its
// keys (fetched over TLS only); aud = the token endpoint (or the
// issuer's configured audience); times; a jti; the resource; the subject
// rules and the scopes they give; the DPoP proof; and last the single-use
// jti. The token's sub and client_id are the workload's sub.
func (s *Server) workloadGrant(w http.ResponseWriter, r *http.Request, a *assertion) {
	wi := s.workloadIssuer(a.issuer())
	if wi == nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the assertion's issuer "+strconv.Quote(a.issuer())+
			" is not a trusted workload issuer (builtin.trusted_workload_issuers), and it is no ID-JAG (typ "+typIDJAG+")")
		return
	}
	if a.typ != "" && a.typ != "jwt" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "a workload JWT has typ JWT or none, not "+strconv.Quote(a.typ))
		return
	}
	keys, err := s.issuerKeys(r.Context(), wi.Issuer, wi.JWKSURI, a.kid, wi.Fetch)
	if err != nil {
		w.Header().Set("Retry-After", "30")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the workload issuer's keys could not be read: "+err.Error())
		return
	}
	var cl jwt.Claims
	if err := a.verify(keys, &cl); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "workload JWT: "+err.Error())
		return
	}
	if msg := s.checkWorkloadJWT(&cl, wi); msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "workload JWT: "+msg)
		return
	}
	if r.PostForm.Get("resource") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_target", "name the MCP server with the resource parameter (WIF: resource is required)")
		return
	}
	res, msg := s.resource(r.PostForm.Get("resource"))
	if msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_target", msg)
		return
	}
	allowed := wi.allowed(cl.Subject, a.claims, res)
	if len(allowed) == 0 {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "workload "+strconv.Quote(cl.Subject)+" may not get tokens for "+res.ID+" (no subject rule of "+wi.Issuer+" matches)")
		return
	}
	scopes, msg := requestedWithin(r.PostForm.Get("scope"), allowed)
	if msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", msg)
		return
	}
	wc := &client{ID: cl.Subject, Kind: "workload", AuthMethod: "jwt-bearer",
		source: &grantSource{Type: grantJWTBearer, Profile: profileWorkload, Issuer: wi.Issuer}}
	jkt, ok := s.requestProof(w, r, wc, "/token", false)
	if !ok {
		return
	}
	if err := s.useOnce(r.Context(), wi.Issuer, "wif", wi.Issuer, cl.ID, cl.Expiry.Time()); err != nil {
		replayError(w, err, "invalid_grant", "the workload JWT")
		return
	}
	if s.issue(w, wc, cl.Subject, res.ID, scopes, jkt, time.Time{}, "-") {
		s.cfg.Log.Info("token issued", "grant_type", grantJWTBearer, "grant_profile", profileWorkload, "workload_issuer", wi.Issuer,
			"subject", cl.Subject, "resource", res.ID, "scope", strings.Join(scopes, " "))
	}
}

func (s *Server) workloadIssuer(iss string) *WorkloadIssuer {
	for i := range s.cfg.WorkloadIssuers {
		if s.cfg.WorkloadIssuers[i].Issuer == iss {
			return &s.cfg.WorkloadIssuers[i]
		}
	}
	return nil
}

// checkWorkloadJWT: the WIF draft's required claims (iss, sub, aud, exp,
// iat, jti) and a bounded lifetime. aud may be an array (Kubernetes); it
// must contain the expected audience.
func (s *Server) checkWorkloadJWT(cl *jwt.Claims, wi *WorkloadIssuer) string {
	if !slices.Contains(cl.Audience, wi.Audience) {
		return "aud must contain " + wi.Audience
	}
	if cl.Subject == "" {
		return "sub is missing"
	}
	if err := checkTimes(cl, s.now(), wi.MaxLifetime); err != nil {
		return err.Error()
	}
	if cl.ID == "" {
		return "jti is missing (it is required, and single use)"
	}
	return ""
}

// allowed: the scopes of res the subject rules give this workload.
func (wi *WorkloadIssuer) allowed(sub string, claims map[string]any, res *Resource) []string {
	var out []string
	for _, rule := range wi.Subjects {
		if !sameResource(rule.Resource, res.ID) || !subjectMatches(rule.Subject, sub) || !claimsEqual(rule.Claims, claims) {
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

// subjectMatches: pattern equals sub, where each "*" stands for one
// non-empty segment without ':' or '/' (system:serviceaccount:ns:*,
// spiffe://example.org/ns/agents/sa/*).
func subjectMatches(pattern, sub string) bool {
	for {
		i := strings.IndexByte(pattern, '*')
		if i < 0 {
			return pattern == sub
		}
		if !strings.HasPrefix(sub, pattern[:i]) {
			return false
		}
		sub = sub[i:]
		n := strings.IndexAny(sub, ":/")
		if n < 0 {
			n = len(sub)
		}
		if n == 0 {
			return false
		}
		pattern, sub = pattern[i+1:], sub[n:]
	}
}

// claimsEqual: every configured claim is a string claim with that value.
func claimsEqual(want map[string]string, claims map[string]any) bool {
	for k, v := range want {
		if got, ok := claims[k].(string); !ok || got != v {
			return false
		}
	}
	return true
}

// requestedWithin: the requested scopes (default all of allowed) must all
// be in allowed.
func requestedWithin(requested string, allowed []string) ([]string, string) {
	want := strings.Fields(requested)
	if len(want) == 0 {
		return allowed, ""
	}
	var out []string
	for _, sc := range want {
		if !slices.Contains(allowed, sc) {
			return nil, "scope " + strconv.Quote(sc) + " is not granted to this workload for this resource"
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, ""
}
