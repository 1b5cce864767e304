package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ClientName is the client_name mcpgate registers with.
const ClientName = "mcpgate"

// PreRegistered returns a pre-registered client with its token endpoint
// authentication method: private_key_jwt when a key is given, none without
// a secret, else client_secret_basic unless the AS only lists
// client_secret_post. method overrides the choice.
func PreRegistered(as *ServerMetadata, id, secret string, key *Client, method string) *Client {
	c := &Client{ID: id, Secret: secret, Kind: "preregistered", Issuer: as.Issuer}
	switch {
	case method != "":
		c.AuthMethod = method
	case key != nil && key.Key != nil:
		c.AuthMethod = "private_key_jwt"
	case secret == "":
		c.AuthMethod = "none"
	case len(as.TokenEndpointAuthMethods) > 0 && !slices.Contains(as.TokenEndpointAuthMethods, "client_secret_basic") &&
		slices.Contains(as.TokenEndpointAuthMethods, "client_secret_post"):
		c.AuthMethod = "client_secret_post"
	default:
		c.AuthMethod = "client_secret_basic"
	}
	if key != nil {
		c.Key, c.KeyID = key.Key, key.KeyID
	}
	return c
}

// MetadataDocumentClient returns the client for a Client ID Metadata
// Document URL (an https URL with a path, used as client_id).
func MetadataDocumentClient(as *ServerMetadata, docURL string) (*Client, error) {
	u, err := url.Parse(docURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path == "" || u.Path == "/" || u.Fragment != "" {
		return nil, fmt.Errorf("--client-metadata-url %q must be an https URL with a path and no fragment", docURL)
	}
	return &Client{ID: docURL, AuthMethod: "none", Kind: "cimd", Issuer: as.Issuer}, nil
}

// ClientMetadataDocument is the document to host at url for CIMD.
func ClientMetadataDocument(docURL string, redirectURIs []string) ([]byte, error) {
	if _, err := MetadataDocumentClient(&ServerMetadata{}, docURL); err != nil {
		return nil, err
	}
	doc := map[string]any{
		"client_id":                  docURL,
		"client_name":                ClientName,
		"redirect_uris":              redirectURIs,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
		"application_type":           "native",
	}
	return json.MarshalIndent(doc, "", "  ")
}

// registration is an RFC 7591 response.
type registration struct {
	ClientID         string   `json:"client_id"`
	ClientSecret     string   `json:"client_secret"`
	ExpiresAt        int64    `json:"client_secret_expires_at"`
	AuthMethod       string   `json:"token_endpoint_auth_method"`
	RedirectURIs     []string `json:"redirect_uris"`
	RegistrationURI  string   `json:"registration_client_uri"`
	RegistrationAuth string   `json:"registration_access_token"`
}

// Register performs Dynamic Client Registration (RFC 7591) as a native
// application. It prefers token endpoint authentication none; when the AS
// only accepts private_key_jwt it generates a key and registers its JWKS.
// The returned client's PrivateKey must be stored with it.
func (e *Engine) Register(ctx context.Context, as *ServerMetadata, redirectURI string, dpopBound bool) (*Client, []byte, error) {
	if as.RegistrationEndpoint == "" {
		return nil, nil, errors.New("the authorization server offers no dynamic client registration; pass --client-id (and a secret) from a client registered by hand, or --client-metadata-url")
	}
	grants := []string{"authorization_code"}
	if slices.Contains(as.GrantTypesSupported, "refresh_token") || slices.Contains(as.ScopesSupported, "offline_access") {
		grants = append(grants, "refresh_token")
	}
	meta := map[string]any{
		"client_name":      ClientName,
		"redirect_uris":    []string{redirectURI},
		"grant_types":      grants,
		"response_types":   []string{"code"},
		"application_type": "native",
	}
	// no "scope" member: a registration limited to the first login's scopes
	// would make every later step-up fail with invalid_scope
	if dpopBound {
		meta["dpop_bound_access_tokens"] = true
	}
	methods := as.TokenEndpointAuthMethods
	var keyDER []byte
	var key *ecdsa.PrivateKey
	switch {
	case len(methods) == 0 || slices.Contains(methods, "none"):
		meta["token_endpoint_auth_method"] = "none"
	case slices.Contains(methods, "private_key_jwt"):
		var err error
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		keyDER, _ = x509.MarshalPKCS8PrivateKey(key)
		jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256", Use: "sig", KeyID: randomString(8)}
		meta["token_endpoint_auth_method"] = "private_key_jwt"
		meta["token_endpoint_auth_signing_alg"] = "ES256"
		meta["jwks"] = map[string]any{"keys": []any{jwk}}
	case slices.Contains(methods, "client_secret_basic"):
		meta["token_endpoint_auth_method"] = "client_secret_basic"
	default:
		meta["token_endpoint_auth_method"] = methods[0]
	}
	body, _ := json.Marshal(meta)
	var r registration
	if err := e.postJSON(ctx, as.RegistrationEndpoint, "registration endpoint", body, &r); err != nil {
		return nil, nil, err
	}
	if r.ClientID == "" {
		return nil, nil, &TokenError{Endpoint: "registration endpoint", Status: 201, Err: errors.New("the answer has no client_id")}
	}
	if err := vschar("client_id", r.ClientID); err != nil {
		return nil, nil, &TokenError{Endpoint: "registration endpoint", Status: 201, Err: err}
	}
	if err := vschar("client_secret", r.ClientSecret); err != nil {
		return nil, nil, &TokenError{Endpoint: "registration endpoint", Status: 201, Err: err}
	}
	c := &Client{ID: r.ClientID, Secret: r.ClientSecret, AuthMethod: r.AuthMethod, Kind: "dcr", Issuer: as.Issuer, RedirectURIs: r.RedirectURIs}
	if c.AuthMethod == "" {
		c.AuthMethod, _ = meta["token_endpoint_auth_method"].(string)
		if c.Secret != "" && c.AuthMethod == "none" {
			c.AuthMethod = "client_secret_basic"
		}
	}
	if r.ExpiresAt > 0 {
		c.ExpiresAt = time.Unix(r.ExpiresAt, 0)
	}
	if c.AuthMethod == "private_key_jwt" {
		if key == nil {
			return nil, nil, errors.New("the authorization server assigned private_key_jwt to a client registered without keys")
		}
		c.Key = key
	}
	return c, keyDER, nil
}

// vschar refuses a registered client_id or client_secret with a character
// outside RFC 6749 Appendix A.1/A.2 (VSCHAR, %x20-7E): such a value is no
// valid credential, and a newline or escape in it would forge lines of
// status and login output and log entries. The value itself is not
// repeated in the error.
func vschar(name, v string) error {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return fmt.Errorf("the registered %s holds a character outside RFC 6749's VSCHAR set (byte %d is 0x%02x); refusing the registration", name, i, v[i])
		}
	}
	return nil
}
