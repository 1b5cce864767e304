package mcpclient

import "slices"

// ExtClientCredentials is the OAuth Client Credentials extension's
// identifier. Clients using it "Include the extension in its per-request
// capabilities" (_meta["io.modelcontextprotocol/clientCapabilities"]
// .extensions; docs/extensions/auth/oauth-client-credentials.mdx, For MCP
// clients, Declare support); for the initialization-based revisions,
// SEP-2133: "Clients advertise extension support in the initialize
// request".
const ExtClientCredentials = "io.modelcontextprotocol/oauth-client-credentials"

// ExtEnterpriseManaged is the Enterprise-Managed Authorization
// extension's identifier (not implemented by mcpgate's client).
const ExtEnterpriseManaged = "io.modelcontextprotocol/enterprise-managed-authorization"

// IsAuthExtension reports whether id is an extension that concerns how the
// client authorizes to the server: the business of the party holding the
// credential (the bridge), not of an MCP client behind it.
func IsAuthExtension(id string) bool {
	return slices.Contains([]string{ExtClientCredentials, ExtEnterpriseManaged}, id)
}
