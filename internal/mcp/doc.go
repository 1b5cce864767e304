// Package mcp holds the Model Context Protocol primitives every role of mcpgate
// shares: protocol revisions and eras, a cheap JSON-RPC envelope peek that reads
// only what routing and policy need, JSON-RPC error builders, the HTTP header
// names of the Streamable HTTP transport, and a streaming SSE reader and writer.
//
// Nothing here does network I/O; the package depends on the standard library only.
package mcp
