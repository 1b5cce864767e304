package authserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

func dpopParams(endpoint string) dpop.Params {
	return dpop.Params{Method: http.MethodPost, URL: endpoint}
}

// refreshRecord is stored per refresh token (by hash).
type refreshRecord struct {
	Family   string    `json:"family"`
	User     string    `json:"user"`
	ClientID string    `json:"client_id"`
	Scopes   []string  `json:"scopes"`
	Resource string    `json:"resource"`
	JKT      string    `json:"jkt,omitempty"`
	Expires  time.Time `json:"expires"`
	UsedAt   time.Time `json:"used_at,omitzero"`
	AuthTime time.Time `json:"auth_time"`
}

// accessClaims is an RFC 9068 access token.
type accessClaims struct {
	jwt.Claims
	ClientID string            `json:"client_id"`
	Scope    string            `json:"scope,omitempty"`
	AuthTime int64             `json:"auth_time,omitempty"`
	Cnf      map[string]string `json:"cnf,omitempty"`
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	jkt := ""
	if proof := r.Header.Get("DPoP"); proof != "" {
		if len(r.Header.Values("DPoP")) > 1 {
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", "more than one DPoP header")
			return
		}
		p, err := s.dpop.Verify(proof, dpopParams(s.url("/token")))
		if err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", err.Error())
			return
		}
		jkt = p.JKT
	}
	grantType := r.PostForm.Get("grant_type")
	if !c.allows(grantType) {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "this client may not use the "+grantType+" grant")
		return
	}
	switch grantType {
	case "authorization_code":
		s.codeGrant(w, r, c, jkt)
	case "refresh_token":
		s.refreshGrant(w, r, c, jkt)
	case "client_credentials":
		s.clientCredentials(w, r, c, jkt)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code, refresh_token or client_credentials")
	}
}

func (s *Server) codeGrant(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	raw, _ := s.cfg.Store.Take("codes", hashToken(r.PostForm.Get("code")))
	var g grant
	if raw == nil || json.Unmarshal(raw, &g) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code is unknown, used or expired")
		return
	}
	switch {
	case g.ClientID != c.ID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
		return
	case r.PostForm.Get("redirect_uri") != g.RedirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request")
		return
	case !pkceOK(r.PostForm.Get("code_verifier"), g.Challenge):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
		return
	}
	if res := r.PostForm.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != strings.TrimSuffix(g.Resource, "/") {
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource differs from the authorization request")
		return
	}
	if g.DPoPJKT != "" && g.DPoPJKT != jkt {
		oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", "the token request's DPoP key differs from dpop_jkt of the authorization request")
		return
	}
	s.issue(w, c, g.User, g.Resource, g.Scopes, jkt, g.AuthTime, "")
}

func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	h := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(h[:])), []byte(challenge)) == 1
}

// refreshGrant rotates refresh tokens. A token used again within the grace
// window (concurrent refreshes) still works; used again later, it is taken
// as stolen and its whole family is revoked.
func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	key := hashToken(r.PostForm.Get("refresh_token"))
	raw, _ := s.cfg.Store.Get("refresh", key)
	var rt refreshRecord
	if raw == nil || json.Unmarshal(raw, &rt) != nil || s.now().After(rt.Expires) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, revoked or expired")
		return
	}
	if rt.ClientID != c.ID {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token belongs to another client")
		return
	}
	if !rt.UsedAt.IsZero() && s.now().Sub(rt.UsedAt) > s.cfg.RefreshGrace {
		s.revokeFamily(rt.Family)
		s.cfg.Log.Warn("refresh token reuse: family revoked", "client_id", c.ID, "user", rt.User)
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was already used; all tokens of this grant are revoked")
		return
	}
	if rt.JKT != "" && rt.JKT != jkt {
		oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", "the refresh token is bound to another DPoP key")
		return
	}
	if res := r.PostForm.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != strings.TrimSuffix(rt.Resource, "/") {
		oauthError(w, http.StatusBadRequest, "invalid_target", "a refresh token is for one resource only")
		return
	}
	scopes := rt.Scopes
	if want := strings.Fields(r.PostForm.Get("scope")); len(want) > 0 {
		for _, sc := range want {
			if !slices.Contains(rt.Scopes, sc) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "scope "+sc+" was not granted")
				return
			}
		}
		scopes = want
	}
	if rt.UsedAt.IsZero() {
		rt.UsedAt = s.now()
		raw, _ := json.Marshal(rt)
		_ = s.cfg.Store.Put("refresh", key, raw, time.Until(rt.Expires))
	}
	if rt.JKT != "" {
		jkt = rt.JKT
	}
	s.issue(w, c, rt.User, rt.Resource, scopes, jkt, rt.AuthTime, rt.Family)
}

func (s *Server) revokeFamily(family string) {
	all, _ := s.cfg.Store.List("refresh")
	for k, raw := range all {
		var rt refreshRecord
		if json.Unmarshal(raw, &rt) == nil && rt.Family == family {
			_ = s.cfg.Store.Delete("refresh", k)
		}
	}
}

func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	if c.public() {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "the client credentials grant needs a confidential client")
		return
	}
	res, msg := s.resource(r.PostForm.Get("resource"))
	if msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_target", msg)
		return
	}
	scopes, serr := s.scopes(c, res, strings.Fields(r.PostForm.Get("scope")))
	if serr != "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", serr)
		return
	}
	s.issue(w, c, c.ID, res.ID, scopes, jkt, time.Time{}, "-")
}

// issue answers with an access token (and a rotated refresh token for
// clients that may refresh). family "" starts a new refresh family, "-"
// issues none.
func (s *Server) issue(w http.ResponseWriter, c *client, user, resource string, scopes []string, jkt string, authTime time.Time, family string) {
	at, err := s.accessToken(c.ID, user, resource, scopes, jkt, authTime)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "signing the token failed")
		return
	}
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.cfg.AccessTokenTTL.Seconds()),
		"scope": strings.Join(scopes, " ")}
	if jkt != "" {
		resp["token_type"] = "DPoP"
	}
	if family != "-" && c.allows("refresh_token") {
		if family == "" {
			family = randomID(16)
		}
		rt := randomID(32)
		rec := refreshRecord{Family: family, User: user, ClientID: c.ID, Scopes: scopes, Resource: resource,
			Expires: s.now().Add(s.cfg.RefreshTokenTTL), AuthTime: authTime}
		if jkt != "" && c.public() {
			rec.JKT = jkt // RFC 9449 §5: public clients' refresh tokens are bound too
		}
		raw, _ := json.Marshal(rec)
		if err := s.cfg.Store.Put("refresh", hashToken(rt), raw, s.cfg.RefreshTokenTTL); err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", "storing the refresh token failed")
			return
		}
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) accessToken(clientID, user, resource string, scopes []string, jkt string, authTime time.Time) (string, error) {
	k := s.keys.signer()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", k.KID))
	if err != nil {
		return "", err
	}
	now := s.now()
	cl := accessClaims{Claims: jwt.Claims{Issuer: s.cfg.Issuer, Subject: user, Audience: jwt.Audience{resource}, ID: randomID(16),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(s.cfg.AccessTokenTTL))},
		ClientID: clientID, Scope: strings.Join(scopes, " ")}
	if !authTime.IsZero() {
		cl.AuthTime = authTime.Unix()
	}
	if jkt != "" {
		cl.Cnf = map[string]string{"jkt": jkt}
	}
	return jwt.Signed(signer).Claims(cl).Serialize()
}

// parseAccess verifies one of our access tokens.
func (s *Server) parseAccess(token string) (*accessClaims, bool) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return nil, false
	}
	set := s.keys.jwks()
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return nil, false
	}
	var cl accessClaims
	if err := tok.Claims(keys[0].Key, &cl); err != nil {
		return nil, false
	}
	if cl.Issuer != s.cfg.Issuer || cl.Expiry == nil || s.now().After(cl.Expiry.Time()) {
		return nil, false
	}
	if revoked, _ := s.cfg.Store.Get("revoked", cl.ID); revoked != nil {
		return nil, false
	}
	return &cl, true
}

// revoke implements RFC 7009: refresh tokens end their family; access
// tokens are remembered as revoked until they expire (introspection sees
// it; resource servers that verify JWTs locally see it at expiry).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	t := r.PostForm.Get("token")
	if raw, _ := s.cfg.Store.Get("refresh", hashToken(t)); raw != nil {
		var rt refreshRecord
		if json.Unmarshal(raw, &rt) == nil && rt.ClientID == c.ID {
			s.revokeFamily(rt.Family)
		}
	} else if cl, ok := s.parseAccess(t); ok && cl.ClientID == c.ID {
		_ = s.cfg.Store.Put("revoked", cl.ID, []byte("1"), time.Until(cl.Expiry.Time())+time.Minute)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// introspect implements RFC 7662 for confidential clients.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	c, err := s.authenticate(r)
	if err != nil || c.public() {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "introspection needs a confidential client")
		return
	}
	t := r.PostForm.Get("token")
	if cl, ok := s.parseAccess(t); ok {
		out := map[string]any{"active": true, "token_type": "Bearer", "scope": cl.Scope, "client_id": cl.ClientID, "sub": cl.Subject,
			"aud": cl.Audience[0], "iss": cl.Issuer, "exp": cl.Expiry.Time().Unix(), "iat": cl.IssuedAt.Time().Unix(), "jti": cl.ID}
		if cl.Cnf != nil {
			out["cnf"] = cl.Cnf
			out["token_type"] = "DPoP"
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	if raw, _ := s.cfg.Store.Get("refresh", hashToken(t)); raw != nil {
		var rt refreshRecord
		if json.Unmarshal(raw, &rt) == nil && s.now().Before(rt.Expires) && (rt.UsedAt.IsZero() || s.now().Sub(rt.UsedAt) <= s.cfg.RefreshGrace) {
			writeJSON(w, http.StatusOK, map[string]any{"active": true, "token_type": "refresh_token", "scope": strings.Join(rt.Scopes, " "),
				"client_id": rt.ClientID, "sub": rt.User, "aud": rt.Resource, "iss": s.cfg.Issuer, "exp": rt.Expires.Unix()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": false})
}
