package mcp

import "slices"

// Protocol revisions mcpgate speaks, oldest first.
const (
	V20241105 = "2024-11-05" // HTTP+SSE transport, no authorization
	V20250326 = "2025-03-26" // Streamable HTTP, sessions, first OAuth framework
	V20250618 = "2025-06-18" // resource-server model, MCP-Protocol-Version header
	V20251125 = "2025-11-25" // CIMD, step-up, SSE polling
	V20260728 = "2026-07-28" // stateless: _meta version, Mcp-Method/Mcp-Name
	// Latest is the newest revision mcpgate implements.
	Latest = V20260728
)

// Supported lists the revisions accepted in MCP-Protocol-Version and _meta,
// newest first, as UnsupportedProtocolVersionError's data.supported wants them.
var supported = []string{V20260728, V20251125, V20250618, V20250326, V20241105}

// Supported returns a fresh copy of the supported revisions, newest first.
func Supported() []string { return slices.Clone(supported) }

// IsSupported reports whether v is a revision mcpgate implements.
func IsSupported(v string) bool { return slices.Contains(supported, v) }

// Era is the transport semantics a request is served with. It is decided once,
// at the edge, and travels with the request.
type Era int

const (
	// EraUnknown means the request has not been classified.
	EraUnknown Era = iota
	// EraLegacySSE is the 2024-11-05 HTTP+SSE transport (GET stream + POST endpoint).
	EraLegacySSE
	// EraSession is Streamable HTTP with initialize and Mcp-Session-Id
	// (2025-03-26, 2025-06-18, 2025-11-25).
	EraSession
	// EraStateless is the 2026-07-28 transport: POST only, per-request _meta.
	EraStateless
)

func (e Era) String() string {
	switch e {
	case EraLegacySSE:
		return "legacy-sse"
	case EraSession:
		return "session"
	case EraStateless:
		return "stateless"
	}
	return "unknown"
}

// EraOf maps a protocol revision to its HTTP era. Unknown revisions map to
// EraUnknown; callers reject them before asking.
func EraOf(version string) Era {
	switch version {
	case V20241105:
		// 2024-11-05 clients that reach a Streamable HTTP endpoint negotiate
		// through initialize exactly like session-era clients.
		return EraSession
	case V20250326, V20250618, V20251125:
		return EraSession
	case V20260728:
		return EraStateless
	}
	return EraUnknown
}

// HasHeaderValidation reports whether revision v defines the Mcp-Method /
// Mcp-Name header mirroring that intermediaries may rely on (2026-07-28+).
func HasHeaderValidation(v string) bool { return v >= V20260728 && IsSupported(v) }
