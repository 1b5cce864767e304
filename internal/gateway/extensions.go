package gateway

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Extension declarations (issue 12 item 6). "Servers advertise extension
// support in the server/discover response" (docs/extensions/overview.mdx
// §Negotiation; SEP-2133: "in the initialize response" for the
// initialization-based revisions), under capabilities.extensions, "a map
// of extension identifiers to per-extension settings objects"
// (2026-07-28 basic/versioning §Extension Negotiation).
//
// The gateway, not the upstream, is the protected resource its clients
// authorize against, so the authorization extensions in a result it
// forwards are its own business: each one the gateway supports for this
// mount is declared, each other one is removed (an upstream's claim names
// its own authorization server, which the gateway's clients never reach).
// Every other extension is the upstream's and passes unchanged (the
// stateless stdio/sse path already drops Tasks, session/capabilities.go).
const (
	ExtClientCredentials = "io.modelcontextprotocol/oauth-client-credentials"
	ExtEnterpriseManaged = "io.modelcontextprotocol/enterprise-managed-authorization"
)

// authExtensions are the extensions that concern how clients authorize.
var authExtensions = []string{ExtClientCredentials, ExtEnterpriseManaged}

// authExtensionsOf lists the authorization extensions this mount supports:
// client credentials when one of its trusted issuers issues tokens by
// that grant — the built-in authorization server when a configured client
// has the grant or registered clients may get it, an external one when
// its fetched metadata lists client_credentials in grant_types_supported
// (not known, not claimed). Enterprise-managed authorization is not
// implemented, so never declared.
func (m *mount) authExtensionsOf() []string {
	v := m.verifier.Load()
	if v == nil {
		return nil
	}
	for _, is := range v.Issuers() {
		if m.g.cfg.AuthorizationServer == "builtin" && is == m.g.cfg.PublicURL {
			if m.g.builtinClientCredentials() {
				return []string{ExtClientCredentials}
			}
			continue
		}
		if ok, _ := v.OffersGrant(is, "client_credentials"); ok {
			return []string{ExtClientCredentials}
		}
	}
	return nil
}

// builtinClientCredentials reports whether the built-in authorization
// server grants client_credentials to anyone.
func (g *Gateway) builtinClientCredentials() bool {
	b := g.cfg.Builtin
	if len(b.RegistrationClientCredentialsScopes) > 0 {
		return true
	}
	for _, c := range b.Clients {
		if slices.Contains(c.GrantTypes, "client_credentials") {
			return true
		}
	}
	return false
}

// declareExtensions rewrites the capabilities of an initialize or
// server/discover result: authorization extensions become exactly those
// in supported. Every exact "capabilities" member is rewritten (a
// duplicate cannot keep a claim one parser reads); a result without an
// object there is left as it is. Other bytes are unchanged.
func declareExtensions(result json.RawMessage, supported []string) (json.RawMessage, bool) {
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	changed := false
	for i, m := range members {
		if m.Key != "capabilities" {
			continue
		}
		if out, ok := declareIn(m.Raw, supported); ok {
			members[i].Raw, changed = out, true
		}
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}

// declareIn rewrites one capabilities object.
func declareIn(caps json.RawMessage, supported []string) (json.RawMessage, bool) {
	members, err := mcp.Members(caps)
	if err != nil {
		return caps, false
	}
	changed, seen := false, false
	for i, m := range members {
		if m.Key != "extensions" {
			continue
		}
		seen = true
		out, ok := declareInExtensions(m.Raw, supported)
		if ok {
			members[i].Raw, changed = out, true
		}
	}
	if !seen && len(supported) > 0 {
		members = append(members, mcp.Member{Key: "extensions", Raw: extensionsObject(nil, supported)})
		changed = true
	}
	if !changed {
		return caps, false
	}
	return mcp.JoinMembers(members), true
}

// declareInExtensions rewrites one extensions map: auth extensions out
// unless supported (the upstream's settings object is kept when it is),
// each supported one added with empty settings when missing. A map the
// gateway cannot read (not an object) is replaced by the supported ones,
// so no claim passes unread.
func declareInExtensions(ext json.RawMessage, supported []string) (json.RawMessage, bool) {
	members, err := mcp.Members(ext)
	if err != nil {
		if bytes.Equal(bytes.TrimSpace(ext), []byte("null")) && len(supported) == 0 {
			return ext, false
		}
		return extensionsObject(nil, supported), true
	}
	changed := false
	out := members[:0]
	have := map[string]bool{}
	for _, m := range members {
		if slices.Contains(authExtensions, m.Key) && !slices.Contains(supported, m.Key) {
			changed = true
			continue
		}
		have[m.Key] = true
		out = append(out, m)
	}
	for _, s := range supported {
		if !have[s] {
			out = append(out, mcp.Member{Key: s, Raw: json.RawMessage(`{}`)})
			changed = true
		}
	}
	if !changed {
		return ext, false
	}
	return mcp.JoinMembers(out), true
}

func extensionsObject(members []mcp.Member, supported []string) json.RawMessage {
	for _, s := range supported {
		members = append(members, mcp.Member{Key: s, Raw: json.RawMessage(`{}`)})
	}
	return mcp.JoinMembers(members)
}
