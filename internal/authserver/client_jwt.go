package authserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	authPrivateKeyJWT = "private_key_jwt"
	// maxClientAssertionLife bounds exp - iat of a client assertion: it
	// is made for one request.
	maxClientAssertionLife = 5 * time.Minute
)

// authenticateAssertion is private_key_jwt client authentication (RFC 7523
// §2.2 and §3): client_assertion_type jwt-bearer; a JWT with iss = sub =
// the client id, aud = this server's issuer (RFC 7523bis; the token
// endpoint URL is accepted too, RFC 7523 §3), exp within 5 minutes of
// iat, a single-use jti, signed by a key of the client's registered JWKS
// (jwks, jwks_uri, or its metadata document's). No other credential may
// come with it.
func (s *Server) authenticateAssertion(r *http.Request) (*client, error) {
	f := r.PostForm
	if _, _, basic := r.BasicAuth(); basic || f.Has("client_secret") {
		return nil, errors.New("use one client authentication method: client_assertion, or a secret, not both")
	}
	if len(f["client_assertion"]) != 1 || len(f["client_assertion_type"]) != 1 || f.Get("client_assertion_type") != clientAssertionJWT {
		return nil, fmt.Errorf("private_key_jwt needs one client_assertion and client_assertion_type %s", clientAssertionJWT)
	}
	a, err := parseAssertion(f.Get("client_assertion"))
	if err != nil {
		return nil, fmt.Errorf("client_assertion: %v", err)
	}
	id := a.issuer()
	if id == "" || a.claims["sub"] != id {
		return nil, errors.New("client_assertion: iss and sub must both be the client_id")
	}
	if cid := f.Get("client_id"); cid != "" && cid != id {
		return nil, errors.New("client_assertion: client_id differs from the assertion's iss")
	}
	c, err := s.lookup(r.Context(), id)
	if err != nil || c == nil {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	if c.AuthMethod != authPrivateKeyJWT {
		return nil, fmt.Errorf("client %q is not registered for private_key_jwt", id)
	}
	keys, err := s.clientKeys(r, c, a.kid)
	if err != nil {
		return nil, fmt.Errorf("client_assertion: the client's keys: %v", err)
	}
	var cl jwt.Claims
	if err := a.verify(keys, &cl); err != nil {
		return nil, fmt.Errorf("client_assertion: %v", err)
	}
	if !audienceIs(cl.Audience, s.cfg.Issuer, s.url("/token")) {
		return nil, fmt.Errorf("client_assertion: aud must be this server's issuer %s (one value)", s.cfg.Issuer)
	}
	if err := checkTimes(&cl, s.now(), maxClientAssertionLife); err != nil {
		return nil, fmt.Errorf("client_assertion: %v", err)
	}
	if err := s.useOnce(r.Context(), c.ID, "client", c.ID, cl.ID, cl.Expiry.Time()); err != nil {
		return nil, assertionUseError{err}
	}
	return c, nil
}

// assertionUseError: the jti check failed (replay, or the store could not
// answer); clientRequest maps it to its answer.
type assertionUseError struct{ err error }

func (e assertionUseError) Error() string {
	if errors.Is(e.err, errReplayed) {
		return "client_assertion was already used (its jti is single use)"
	}
	return "client_assertion could not be checked for replay"
}

func (e assertionUseError) Unwrap() error { return e.err }

// clientKeys: the client's inline JWKS, or its jwks_uri fetched with the
// SSRF-safe metadata fetcher (budgeted and cached in keySets).
func (s *Server) clientKeys(r *http.Request, c *client, kid string) ([]jose.JSONWebKey, error) {
	if len(c.JWKS) > 0 {
		set, err := parseKeySet(c.JWKS)
		if err != nil {
			return nil, err
		}
		return pick(set, kid), nil
	}
	if c.JWKSURI == "" {
		return nil, errors.New("the client has no jwks or jwks_uri")
	}
	return s.ent.clientKeys.keys(r.Context(), c.JWKSURI, kid, s.cfg.FetchClientMetadata)
}

// cimdAuthMethod: a Client ID Metadata Document client is public (none),
// or authenticates with private_key_jwt and its jwks_uri (https) or
// inline jwks (draft-ietf-oauth-client-id-metadata-document §6.2). A
// secret-based method cannot be used: there is nobody to issue a secret.
func cimdAuthMethod(method, jwksURI string, jwks []byte) (string, error) {
	switch method {
	case "", "none":
		return "none", nil
	case authPrivateKeyJWT:
		if (jwksURI == "") == (len(jwks) == 0) {
			return "", errors.New("private_key_jwt needs exactly one of jwks_uri and jwks")
		}
		if jwksURI != "" && !strings.HasPrefix(jwksURI, "https://") {
			return "", fmt.Errorf("jwks_uri %q is not an https URL", jwksURI)
		}
		if len(jwks) > 0 {
			if _, err := parseKeySet(jwks); err != nil {
				return "", err
			}
		}
		return authPrivateKeyJWT, nil
	}
	return "", fmt.Errorf("asks for %s; use none or private_key_jwt", method)
}
