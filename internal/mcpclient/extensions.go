package mcpclient

// ExtClientCredentials is the OAuth Client Credentials extension's
// identifier. Clients using it "Include the extension in its per-request
// capabilities" (_meta["io.modelcontextprotocol/clientCapabilities"]
// .extensions; docs/extensions/auth/oauth-client-credentials.mdx, For MCP
// clients, Declare support); for the initialization-based revisions,
// SEP-2133: "Clients advertise extension support in the initialize
// request".
const ExtClientCredentials = "io.modelcontextprotocol/oauth-client-credentials"
