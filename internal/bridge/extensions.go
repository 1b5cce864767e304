package bridge

import (
	"bytes"
	"encoding/json"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// Extension declarations toward the server (issue 12 item 6). "Extensions
// are advertised in the extensions field of capabilities, which is a map
// of extension identifiers to per-extension settings objects" and "If one
// party supports an extension but the other does not, the supporting
// party MUST either revert to core protocol behavior or reject the
// request" (2026-07-28 basic/versioning §Extension Negotiation).
//
// The bridge declares its stdio client's capabilities — the client is the
// one that answers sampling, elicitation and roots, and implements the
// extensions it names — with one exception: the authorization extensions
// concern how the credential is obtained, and the bridge, not its stdio
// client, authorizes to the server. Those the stdio client names are
// dropped, and those the bridge implements (Options.Extensions: client
// credentials when connect runs with --client-credentials) are added.
// URL-mode elicitation is a capability of the stdio client
// (elicitation.url), relayed as the client declared it (elicit.go).

// declared is the capabilities object the bridge sends for a stdio client
// that declared client (nil: none). It returns client itself when there is
// nothing to change.
func (b *Bridge) declared(client json.RawMessage) json.RawMessage {
	caps := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(client)) > 0 && string(client) != "null" {
		if json.Unmarshal(client, &caps) != nil {
			return client // not an object: the server judges it
		}
	}
	ext := map[string]json.RawMessage{}
	if raw, ok := caps["extensions"]; ok && json.Unmarshal(raw, &ext) != nil {
		ext = map[string]json.RawMessage{}
	}
	changed := false
	for id := range ext {
		if mcpclient.IsAuthExtension(id) {
			if _, ours := b.o.Extensions[id]; !ours {
				delete(ext, id)
				changed = true
			}
		}
	}
	for id, settings := range b.o.Extensions {
		enc, err := json.Marshal(settings)
		if err != nil {
			continue
		}
		if !bytes.Equal(ext[id], enc) {
			ext[id] = enc
			changed = true
		}
	}
	if !changed {
		if client == nil {
			return json.RawMessage(`{}`)
		}
		return client
	}
	if len(ext) == 0 {
		delete(caps, "extensions")
	} else {
		caps["extensions"], _ = json.Marshal(ext)
	}
	out, _ := json.Marshal(caps)
	return out
}

// withCapabilities is the initialize request raw with params.capabilities
// set to caps, or raw itself when the client's own (was) stands.
func withCapabilities(raw []byte, was, caps json.RawMessage) []byte {
	if bytes.Equal(was, caps) || was == nil && string(caps) == "{}" {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	params := map[string]json.RawMessage{}
	if p := m["params"]; len(p) > 0 && json.Unmarshal(p, &params) != nil {
		return raw
	}
	params["capabilities"] = caps
	m["params"], _ = json.Marshal(params)
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
