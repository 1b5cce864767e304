package authserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
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
	// Successor is the answer that rotated this token, sealed with a key
	// derived from this token (refresh_rotation.go); Replayed: it was
	// handed out again once, within the grace.
	Successor string `json:"successor,omitempty"`
	Replayed  bool   `json:"replayed,omitempty"`
}

// accessClaims is an RFC 9068 access token.
type accessClaims struct {
	jwt.Claims
	ClientID string            `json:"client_id"`
	Scope    string            `json:"scope,omitempty"`
	AuthTime int64             `json:"auth_time,omitempty"`
	Cnf      map[string]string `json:"cnf,omitempty"`
	// Act names the actor of an exchanged token (RFC 8693 §4.1;
	// token_exchange.go).
	Act *actor `json:"act,omitempty"`
	// Grant names how a token of a JWT bearer grant was obtained (no
	// registered claim exists for it; enterprise.go).
	Grant *grantSource `json:"mcpgate_grant,omitempty"`
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	if s.jwtBearer(w, r) {
		return
	}
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	jkt, ok := s.requestProof(w, r, c, "/token", false)
	if !ok {
		return
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
	case grantTokenExchange:
		s.tokenExchange(w, r, c, jkt) // token_exchange.go
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code, refresh_token, client_credentials or "+grantTokenExchange)
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
	if s.issue(w, c, g.User, g.Resource, g.Scopes, jkt, g.AuthTime, "") {
		s.markUsed(c)
	}
}

func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	h := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(h[:])), []byte(challenge)) == 1
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

// clientCredentials is the grant with no user: the token carries the
// scopes the client is configured for (all of them, or those requested),
// never every scope of the resource; a client with none is refused.
func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	if c.public() {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "the client credentials grant needs a confidential client")
		return
	}
	mine := s.clientCredentialScopes(c)
	if len(mine) == 0 {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "this client has no scopes for the client credentials grant")
		return
	}
	res, msg := s.resource(r.PostForm.Get("resource"))
	if msg != "" {
		oauthError(w, http.StatusBadRequest, "invalid_target", msg)
		return
	}
	allowed := slices.DeleteFunc(slices.Clone(res.Scopes), func(sc string) bool { return !slices.Contains(mine, sc) })
	scopes := allowed
	if want := strings.Fields(r.PostForm.Get("scope")); len(want) > 0 {
		scopes = nil
		for _, sc := range want {
			if !slices.Contains(allowed, sc) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "scope "+strconv.Quote(sc)+" is not available to this client for this resource")
				return
			}
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	if len(scopes) == 0 {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "none of this client's scopes is a scope of this resource")
		return
	}
	if s.issue(w, c, c.ID, res.ID, scopes, jkt, time.Time{}, "-") {
		s.markUsed(c)
	}
}

// issue answers with an access token (and a rotated refresh token for
// clients that may refresh). family "" starts a new refresh family, "-"
// issues none. It reports whether it issued.
func (s *Server) issue(w http.ResponseWriter, c *client, user, resource string, scopes []string, jkt string, authTime time.Time, family string) bool {
	resp, err := s.tokenResponse(c, user, resource, scopes, jkt, authTime, family)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return false
	}
	writeJSON(w, http.StatusOK, resp)
	return true
}

// tokenResponse signs the access token and stores the refresh token. A
// refresh token issued with a DPoP proof is bound to its key whatever the
// client (RFC 9449 §5 requires it for public clients; mcpgate does it for
// all, so that no DPoP-bound grant can be continued without the key).
func (s *Server) tokenResponse(c *client, user, resource string, scopes []string, jkt string, authTime time.Time, family string) (map[string]any, error) {
	at, err := s.accessToken(c.ID, user, resource, scopes, jkt, authTime, c.source)
	if err != nil {
		return nil, errors.New("signing the token failed")
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
			Expires: s.now().Add(s.cfg.RefreshTokenTTL), AuthTime: authTime, JKT: jkt}
		raw, _ := json.Marshal(rec)
		if err := s.cfg.Store.Put("refresh", hashToken(rt), raw, s.cfg.RefreshTokenTTL); err != nil {
			return nil, errors.New("storing the refresh token failed")
		}
		resp["refresh_token"] = rt
	}
	return resp, nil
}

func (s *Server) accessToken(clientID, user, resource string, scopes []string, jkt string, authTime time.Time, source *grantSource) (string, error) {
	now := s.now()
	cl := accessClaims{Claims: jwt.Claims{Issuer: s.cfg.Issuer, Subject: user, Audience: jwt.Audience{resource}, ID: randomID(16),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(s.cfg.AccessTokenTTL))},
		ClientID: clientID, Scope: strings.Join(scopes, " "), Grant: source}
	if !authTime.IsZero() {
		cl.AuthTime = authTime.Unix()
	}
	if jkt != "" {
		cl.Cnf = map[string]string{"jkt": jkt}
	}
	return s.signAccess(cl)
}

// signAccess signs an RFC 9068 access token with the current key.
func (s *Server) signAccess(cl accessClaims) (string, error) {
	k := s.keys.signer()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", k.KID))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(cl).Serialize()
}

// parseAccess verifies one of our access tokens.
func (s *Server) parseAccess(token string) (*accessClaims, bool) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].ExtraHeaders[jose.HeaderType] != "at+jwt" {
		return nil, false // only access tokens (RFC 9068 typ), nothing else this key might sign
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
		_ = s.cfg.Store.Put("revoked", cl.ID, []byte("1"), ttlUntil(cl.Expiry.Time().Add(time.Minute)))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// introspect implements RFC 7662 for resource servers (mayIntrospect).
// Only access tokens are active: the answer names their type (Bearer or
// DPoP, with cnf) and audience. A refresh token is reported inactive — it
// is no credential for a resource server, and a resource server that
// took it would accept a token that outlives every access token (and,
// DPoP-bound, without its proof).
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	c, err := s.authenticate(r)
	var use assertionUseError
	if errors.As(err, &use) && !errors.Is(err, errReplayed) {
		replayError(w, use.err, "invalid_client", "the client_assertion") // the jti store could not answer: 503
		return
	}
	if err != nil || c.public() {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "introspection needs a confidential client")
		return
	}
	if !s.mayIntrospect(c) {
		oauthError(w, http.StatusForbidden, "unauthorized_client", "introspection is for configured resource servers (builtin.introspection_clients)")
		return
	}
	if cl, ok := s.parseAccess(r.PostForm.Get("token")); ok {
		out := map[string]any{"active": true, "token_type": "Bearer", "scope": cl.Scope, "client_id": cl.ClientID, "sub": cl.Subject,
			"aud": cl.Audience[0], "iss": cl.Issuer, "exp": cl.Expiry.Time().Unix(), "iat": cl.IssuedAt.Time().Unix(), "jti": cl.ID}
		if cl.Cnf != nil {
			out["cnf"] = cl.Cnf
			out["token_type"] = "DPoP"
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": false})
}
