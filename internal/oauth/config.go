package oauth

import (
	"crypto"
	"time"
)

// Config is how the user wants to authenticate to one server.
type Config struct {
	ServerURL         string
	Profile           string // default "default"
	ClientID          string
	ClientSecret      string
	ClientMetadataURL string
	AuthMethod        string
	ClientKey         crypto.Signer
	ClientKeyID       string
	Scopes            []string // --scope: replaces the spec's selection
	Issuer            string   // choose among several authorization servers
	NoResource        bool
	DPoP              string // auto (default), on, off
	NoPAR             bool
	Redirect          Redirect
	// Callback, when set, receives the redirect instead of a listener of
	// its own (the broker's /oauth/callback).
	Callback          *Listener
	Interaction       Interaction
	ClientCredentials bool
	Device            bool
	// NonInteractive: never start a user login; return ErrLoginRequired.
	NonInteractive bool
	// Overrides patch discovered AS metadata for broken servers.
	Overrides ServerMetadata
	// Force makes Login authorize even when another process just stored
	// a token (mcpgate login).
	Force bool
	// RefreshSkew: refresh when the token expires within it (default 60s).
	RefreshSkew time.Duration
	// DPoPContentDigest adds the content_digest claim (a digest of the
	// request body) to DPoP proofs sent to the MCP server, for servers
	// that still require the first MCP DPoP draft's claim. Default off:
	// standard RFC 9449 proofs, as the current profile (SEP-1932) defines.
	DPoPContentDigest bool
}

// withDefaults fills the fields whose zero value means "the default".
func (c Config) withDefaults() Config {
	if c.Profile == "" {
		c.Profile = "default"
	}
	if c.DPoP == "" {
		c.DPoP = "auto"
	}
	if c.RefreshSkew == 0 {
		c.RefreshSkew = 60 * time.Second
	}
	return c
}
