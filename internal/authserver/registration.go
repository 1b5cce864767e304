package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// registrationMetadata is what a registration request may carry (RFC 7591
// §2). Fields mcpgate does not keep are still bounded: they are checked,
// then dropped.
type registrationMetadata struct {
	RedirectURIs []string `json:"redirect_uris"`
	Name         string   `json:"client_name"`
	GrantTypes   []string `json:"grant_types"`
	AuthMethod   string   `json:"token_endpoint_auth_method"`
	Scope        string   `json:"scope"`
	ClientURI    string   `json:"client_uri"`
	LogoURI      string   `json:"logo_uri"`
	TOSURI       string   `json:"tos_uri"`
	PolicyURI    string   `json:"policy_uri"`
	JWKSURI      string   `json:"jwks_uri"`
	// JWKS: the public keys of a private_key_jwt client (bounded by the
	// body size).
	JWKS            json.RawMessage `json:"jwks"`
	Contacts        []string        `json:"contacts"`
	SoftwareID      string          `json:"software_id"`
	SoftwareVersion string          `json:"software_version"`
	// DPoPBound is dpop_bound_access_tokens (RFC 9449 §5.2); a value that
	// is not a boolean fails the decoding (invalid_client_metadata).
	DPoPBound bool `json:"dpop_bound_access_tokens"`
}

var knownGrants = []string{"authorization_code", "refresh_token", "client_credentials", grantJWTBearer}

// register is Dynamic Client Registration (RFC 7591). In order: is it on,
// the initial access token when one is configured, the rate limits (per
// address and in total), the body size and encoding, each field's size
// and characters, the grant types this registration path may have, and
// finally the cap on registered clients (in the store, atomically). A
// client is stored with an expiry that is lifted when it first completes
// a grant.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DisableRegistration {
		oauthError(w, http.StatusForbidden, "access_denied", "dynamic client registration is disabled on this server")
		return
	}
	withToken := false
	if t := s.cfg.RegistrationToken; t != "" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(t)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			oauthError(w, http.StatusUnauthorized, "invalid_token", "registration needs the initial access token")
			return
		}
		withToken = true
	}
	release, wait := s.reg.reserve(registrationAddress(r), s.now())
	if release == nil {
		w.Header().Set("Retry-After", retryAfter(wait))
		oauthError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many client registrations; try again later")
		return
	}
	done := false
	defer func() {
		if !done {
			release()
		}
	}()
	lim := s.cfg.RegistrationLimits
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(lim.MaxBodyBytes)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			oauthError(w, http.StatusRequestEntityTooLarge, "invalid_client_metadata", fmt.Sprintf("the registration is larger than %d bytes", lim.MaxBodyBytes))
			return
		}
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the registration could not be read")
		return
	}
	if !utf8.Valid(body) {
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the registration is not valid UTF-8")
		return
	}
	var md registrationMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body is not a JSON client metadata document: "+err.Error())
		return
	}
	c, merr := s.registeredClient(&md, withToken)
	if merr != nil {
		oauthError(w, http.StatusBadRequest, merr.code, merr.Error())
		return
	}
	resp := map[string]any{"client_id": c.ID, "client_id_issued_at": c.Created.Unix(), "redirect_uris": c.RedirectURIs,
		"grant_types": c.GrantTypes, "token_endpoint_auth_method": c.AuthMethod, "response_types": []string{"code"},
		"dpop_bound_access_tokens": c.DPoPBound}
	if c.Name != "" {
		resp["client_name"] = c.Name
	}
	if len(c.Scopes) > 0 {
		resp["scope"] = strings.Join(c.Scopes, " ")
	}
	if !c.public() && c.AuthMethod != authPrivateKeyJWT {
		secret := randomID(32)
		c.SecretHash = hashToken(secret)
		resp["client_secret"] = secret
		resp["client_secret_expires_at"] = 0
	}
	raw, _ := json.Marshal(c)
	stored, err := putCapped(s.cfg.Store, "clients", c.ID, raw, lim.UnusedClientTTL, lim.MaxClients)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "storing the registration failed")
		return
	}
	if !stored {
		s.cfg.Log.Warn("client registration refused: the store holds the maximum number of registered clients", "max_clients", lim.MaxClients)
		w.Header().Set("Retry-After", "3600")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "this server holds as many registered clients as it accepts; try again later")
		return
	}
	done = true
	s.cfg.Log.Info("client registered", "client_id", c.ID, "name", c.Name, "with_token", withToken)
	writeJSON(w, http.StatusCreated, resp)
}

// registeredClient checks the metadata and builds the client to store.
func (s *Server) registeredClient(md *registrationMetadata, withToken bool) (*client, *metadataError) {
	lim := s.cfg.RegistrationLimits
	if err := s.checkMetadataFields(md.Name, md.RedirectURIs); err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"client_uri": md.ClientURI, "logo_uri": md.LogoURI, "tos_uri": md.TOSURI, "policy_uri": md.PolicyURI, "jwks_uri": md.JWKSURI} {
		if err := checkURI(field, v, lim.MaxURIBytes); err != nil {
			return nil, err
		}
	}
	if len(md.Contacts) > maxContactCount {
		return nil, badField("contacts", "has %d entries; at most %d are accepted", len(md.Contacts), maxContactCount)
	}
	for i, v := range md.Contacts {
		if err := checkText(fmt.Sprintf("contacts[%d]", i), v, maxShortField); err != nil {
			return nil, err
		}
	}
	for field, v := range map[string]string{"software_id": md.SoftwareID, "software_version": md.SoftwareVersion} {
		if err := checkText(field, v, maxShortField); err != nil {
			return nil, err
		}
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{"authorization_code"}
	}
	if len(md.GrantTypes) > len(knownGrants) {
		return nil, badField("grant_types", "has %d entries; at most %d are accepted", len(md.GrantTypes), len(knownGrants))
	}
	var grants []string
	for _, g := range md.GrantTypes {
		if !slices.Contains(knownGrants, g) {
			if err := checkText("grant_types", g, maxShortField); err != nil {
				return nil, err
			}
			return nil, badField("grant_types", "grant type %q is not supported", g)
		}
		if !slices.Contains(grants, g) {
			grants = append(grants, g)
		}
	}
	if len(md.Scope) > maxScopeBytes {
		return nil, badField("scope", "is %d bytes long; at most %d are accepted", len(md.Scope), maxScopeBytes)
	}
	scopes := strings.Fields(md.Scope)
	for _, sc := range scopes {
		for i := 0; i < len(sc); i++ {
			if b := sc[i]; b < 0x21 || b == 0x22 || b == 0x5c || b > 0x7e { // RFC 6749 §3.3 scope-token
				return nil, badField("scope", "scope %q has a character RFC 6749 does not allow in a scope", sc)
			}
		}
	}
	if slices.Contains(grants, "authorization_code") && len(md.RedirectURIs) == 0 {
		return nil, &metadataError{code: "invalid_redirect_uri", field: "redirect_uris", msg: "required for the authorization code grant"}
	}
	for _, u := range md.RedirectURIs {
		if !validRedirect(u) {
			return nil, &metadataError{code: "invalid_redirect_uri", field: "redirect_uris",
				msg: fmt.Sprintf("redirect URI %q must be https, or http on a loopback host, without fragment", u)}
		}
	}
	switch md.AuthMethod {
	case "":
		md.AuthMethod = "client_secret_basic"
	case "none", "client_secret_basic", "client_secret_post":
	case authPrivateKeyJWT:
		if _, err := cimdAuthMethod(md.AuthMethod, md.JWKSURI, md.JWKS); err != nil {
			return nil, badField("jwks", "%v", err)
		}
	default:
		return nil, badField("token_endpoint_auth_method", "%q is not supported", md.AuthMethod)
	}
	if slices.Contains(grants, "client_credentials") {
		// A grant without a user: only for a registration path the
		// operator controls, only for the scopes the operator lists.
		allowed := s.cfg.RegistrationClientCredentialsScopes
		switch {
		case !withToken:
			return nil, badField("grant_types", "client_credentials is not available to self-registered clients (register with the initial access token, or configure the client in builtin.clients)")
		case len(allowed) == 0:
			return nil, badField("grant_types", "client_credentials is not allowed for registered clients (builtin.registration_client_credentials_scopes is empty)")
		case md.AuthMethod == "none":
			return nil, badField("token_endpoint_auth_method", "the client credentials grant needs a confidential client")
		}
		if len(scopes) == 0 {
			scopes = slices.Clone(allowed)
		}
		for _, sc := range scopes {
			if !slices.Contains(allowed, sc) {
				return nil, badField("scope", "scope %q is not allowed for registered clients with the client credentials grant", sc)
			}
		}
	}
	c := &client{ID: randomID(24), Name: md.Name, RedirectURIs: md.RedirectURIs, GrantTypes: grants, AuthMethod: md.AuthMethod,
		Kind: "dcr", Created: s.now(), Scopes: scopes, WithToken: withToken, DPoPBound: md.DPoPBound}
	if md.AuthMethod == authPrivateKeyJWT {
		c.JWKS, c.JWKSURI = md.JWKS, md.JWKSURI
	}
	return c, nil
}

// checkMetadataFields bounds the fields registered and metadata-document
// clients share: the name shown on the sign-in and consent pages, and the
// redirect URIs.
func (s *Server) checkMetadataFields(name string, redirectURIs []string) *metadataError {
	lim := s.cfg.RegistrationLimits
	if err := checkText("client_name", name, lim.MaxNameChars); err != nil {
		return err
	}
	if len(redirectURIs) > lim.MaxRedirectURIs {
		return badField("redirect_uris", "has %d entries; at most %d are accepted", len(redirectURIs), lim.MaxRedirectURIs)
	}
	for i, u := range redirectURIs {
		if err := checkURI(fmt.Sprintf("redirect_uris[%d]", i), u, lim.MaxURIBytes); err != nil {
			return err
		}
	}
	return nil
}
