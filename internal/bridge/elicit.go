package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// URL-mode elicitation through the bridge. The bridge relays; it never
// opens, fetches or follows a URL itself: the stdio client is the one that
// "MUST NOT open the URL without explicit consent from the user" and "MUST
// show the full URL to the user" (client/elicitation "Safe URL Handling").
//
// Capabilities pass as the stdio client declared them (the initialize it
// sent, or the _meta clientCapabilities the bridge adds for a modern
// server), so the remote learns of elicitation.url only from a client
// that declared it. Session era: elicitation/create requests, -32042
// errors and notifications/elicitation/complete pass unchanged. Modern
// server, session-era stdio client (mrtr.go): a URL-mode input request
// becomes an elicitation/create request — refused unless the client
// declared URL mode ("Servers MUST NOT send elicitation requests with
// modes that are not supported by the client") and unless its URL passes
// mcp.CheckElicitationURL — with the elicitationId the 2025-11-25 client
// needs ("URL mode elicitation requests MUST specify mode: "url", a
// message, and include … url … elicitationId"); once the retried request
// completes, the bridge sends that client the
// notifications/elicitation/complete the modern server no longer sends.

// errURLModeNotDeclared ends a request whose server asked for URL mode
// from a client that did not declare it.
var errURLModeNotDeclared = errors.New("the server asked for a URL-mode elicitation, which the client did not declare (capabilities.elicitation.url)")

// sessionEraInput adapts one input request for a session-era stdio
// client: for a URL-mode elicitation it checks the client's capability
// and the URL and adds an elicitationId, returned as id; other requests
// pass unchanged.
func (b *Bridge) sessionEraInput(method string, params json.RawMessage) (out json.RawMessage, id string, err error) {
	if method != "elicitation/create" {
		return params, "", nil
	}
	found, ok := mcp.URLElicitations([]byte(`{"method":"elicitation/create","params":` + string(params) + `}`))
	if !ok {
		return nil, "", errors.New("the server's elicitation request cannot be read")
	}
	if len(found) == 0 {
		return params, "", nil // form mode
	}
	b.mu.Lock()
	caps := b.clientCaps
	b.mu.Unlock()
	if !mcp.DeclaresURLElicitation(caps) {
		return nil, "", errURLModeNotDeclared
	}
	if _, err := mcp.CheckElicitationURL(found[0].URL); err != nil {
		return nil, "", errors.New("the server asked the client to open a URL the bridge refuses: " + err.Error())
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return nil, "", errors.New("the server's elicitation request cannot be read")
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	id = "mcpgate-" + hex.EncodeToString(r[:])
	p["elicitationId"], _ = json.Marshal(id)
	out, err = json.Marshal(p)
	return out, id, err
}

// accepted reports whether an elicitation result is an accept.
func accepted(result json.RawMessage) bool {
	var r map[string]json.RawMessage
	return json.Unmarshal(result, &r) == nil && string(r["action"]) == `"accept"`
}

// completeElicitations tells the session-era client that the out-of-band
// interactions it consented to are over: the request they were for has
// completed.
func (b *Bridge) completeElicitations(ids []string) {
	for _, id := range ids {
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": mcp.MethodElicitationComplete,
			"params": map[string]any{"elicitationId": id}})
		b.write(out)
	}
}
