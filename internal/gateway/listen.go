package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// authorizeSubscriptions applies the resource policy to the resources a
// 2026-07-28 subscriptions/listen names. The subscriptions pattern
// (2026-07-28 basic/patterns/subscriptions) replaces resources/subscribe
// with `"notifications": {"resourceSubscriptions": ["<uri>", …]}`: "Receive
// notifications/resources/updated for these resource URIs". Each URI is
// held to the same canonical form as params.uri of resources/subscribe
// (mcp.CheckResourceURI) and decided by the same rules, so a resource the
// caller may not subscribe to one way cannot be subscribed to the other.
// Members are read as JSON.parse reads them (exact names, the last
// duplicate), which is what a TypeScript server acts on.
func (x *exchange) authorizeSubscriptions(e *mcp.Envelope) bool {
	if e.Method != "subscriptions/listen" || !bytes.Contains(e.Params, []byte("resourceSubscriptions")) && !bytes.Contains(e.Params, []byte(`\u`)) {
		return true
	}
	var uris []string
	ok := true
	if n, found := exactMember(e.Params, "notifications"); found {
		if raw, found := exactMember(n, "resourceSubscriptions"); found {
			ok = json.Unmarshal(raw, &uris) == nil
		}
	}
	if !ok {
		x.refuse(decProtocol, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidParams, id: ownID(e),
			msg: "Invalid params: params.notifications.resourceSubscriptions must be an array of resource URIs"})
		return false
	}
	eng := x.m.policy.Load()
	c := x.caller()
	for _, uri := range uris {
		if err := mcp.CheckResourceURI(uri); err != nil {
			x.refuse(decProtocol, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidParams, id: ownID(e),
				msg: "Invalid params: params.notifications.resourceSubscriptions: " + err.Error()})
			return false
		}
		sub := &mcp.Envelope{ID: e.ID, Method: "resources/subscribe", Name: uri}
		d := eng.Decide(c, sub.Method, uri)
		if !d.Allow {
			x.forbid(d, sub, e.Method, uri)
			return false
		}
	}
	return true
}
