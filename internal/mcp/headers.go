package mcp

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// HTTP header names of the Streamable HTTP transport. Go canonicalises header
// keys, so these are the canonical spellings.
const (
	HeaderSessionID       = "Mcp-Session-Id"
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
	HeaderParamPrefix     = "Mcp-Param-"
	HeaderLastEventID     = "Last-Event-Id"
)

// MetaProtocolVersion is the _meta key that carries the protocol revision of
// a 2026-07-28 request.
const MetaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

const (
	b64Prefix = "=?base64?"
	b64Suffix = "?="
)

// DecodeHeaderValue decodes the Base64 sentinel form "=?base64?…?=" used by
// Mcp-Name and Mcp-Param-* (2026-07-28 transports §Value Encoding). A value
// without the sentinel is returned as is. ok is false for a malformed
// sentinel and for a plain value with characters outside visible ASCII,
// space and tab (RFC 9110 field values without obs-text).
func DecodeHeaderValue(v string) (s string, ok bool) {
	if !strings.HasPrefix(v, b64Prefix) {
		for i := 0; i < len(v); i++ {
			if c := v[i]; (c < 0x20 && c != '\t') || c > 0x7e {
				return "", false
			}
		}
		return v, true
	}
	if !strings.HasSuffix(v, b64Suffix) || len(v) < len(b64Prefix)+len(b64Suffix) {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(v[len(b64Prefix) : len(v)-len(b64Suffix)])
	if err != nil || !utf8.Valid(raw) {
		return "", false
	}
	return string(raw), true
}

// EncodeHeaderValue returns v as a header value, using the Base64 sentinel
// when v is not plain printable ASCII, has leading or trailing white space,
// or itself looks like the sentinel.
func EncodeHeaderValue(v string) string {
	if needsBase64(v) {
		return b64Prefix + base64.StdEncoding.EncodeToString([]byte(v)) + b64Suffix
	}
	return v
}

func needsBase64(v string) bool {
	if v == "" {
		return false
	}
	if strings.HasPrefix(v, b64Prefix) || v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t' {
		return true
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return true
		}
	}
	return false
}
