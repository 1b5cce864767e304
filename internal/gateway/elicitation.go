package gateway

import (
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// URL-mode elicitation through the gateway. Every server→client message
// of every upstream kind passes the response filter; guardElicitations
// wraps it so that a URL an upstream asks the user to open is checked once,
// in each shape of both eras (an elicitation/create request, a -32042
// error's data.elicitations, an InputRequiredResult's inputRequests), before
// the client sees it:
//
//   - the URL must pass mcp.CheckElicitationURL (https, or http to
//     loopback; a host; no user info; printable ASCII): "javascript:",
//     "data:", "file:" and look-alike URLs never reach a client that might
//     render them clickable;
//   - the URL must not contain the caller's access token, plain or
//     percent-encoded: the gateway never forwards the token, so an upstream
//     that has it anyway must not be able to hand it back to a page of its
//     choosing ("MUST NOT include sensitive information about the end-user,
//     including credentials … in the URL").
//
// A refused server request becomes a notifications/message telling the
// client what was withheld (the upstream's request stays unanswered until
// its own timeout); a refused result or error becomes a JSON-RPC error with
// the same id. Refusals are logged and audited without the URL.

// guardElicitations returns next preceded by the URL elicitation check.
func (x *exchange) guardElicitations(next upstream.Filter) upstream.Filter {
	token := callerToken(x.r.Header.Get("Authorization"))
	return func(msg []byte) []byte {
		found, ok := mcp.URLElicitations(msg)
		if ok && len(found) == 0 {
			return next.Apply(msg)
		}
		why := ""
		if !ok {
			why = "the URL elicitation cannot be read"
		}
		for _, e := range found {
			if why != "" {
				break
			}
			if _, err := mcp.CheckElicitationURL(e.URL); err != nil {
				why = strings.TrimPrefix(err.Error(), mcp.ErrElicitationURL.Error()+"\n")
			} else if containsSecret(e.URL, token) {
				why = "the URL contains the caller's access token"
			}
		}
		if why == "" {
			return next.Apply(msg)
		}
		x.m.g.log.LogAttrs(x.r.Context(), slog.LevelWarn, "withheld a URL elicitation from the upstream",
			slog.String("request_id", x.id), slog.String("upstream", x.m.name), slog.String("reason", why))
		x.audit("elicitation/create", "", "deny", "url elicitation withheld: "+why, 0)
		return refusedElicitation(msg, why)
	}
}

// refusedElicitation replaces msg, which held a refused URL elicitation.
func refusedElicitation(msg []byte, why string) []byte {
	text := "the gateway withheld a URL the upstream MCP server asked to show: " + why
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method json.RawMessage `json:"method"`
	}
	_ = json.Unmarshal(msg, &m)
	if m.Method != nil || m.ID == nil {
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/message",
			"params": map[string]any{"level": "error", "logger": "mcpgate", "data": text}})
		return out
	}
	return mcp.ErrorResponse(m.ID, mcp.CodeUpstream, text, nil)
}

// callerToken is the access token of an Authorization header (Bearer or
// DPoP scheme), "" when there is none.
func callerToken(h string) string {
	_, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(tok)
}

// containsSecret reports whether u holds secret, as is or percent-decoded
// (once or twice). Short secrets are not looked for: they would match by
// chance.
func containsSecret(u, secret string) bool {
	if len(secret) < 16 {
		return false
	}
	s := u
	for range 3 {
		if strings.Contains(s, secret) {
			return true
		}
		d, err := url.QueryUnescape(s)
		if err != nil || d == s {
			d2, err2 := url.PathUnescape(s)
			if err2 != nil || d2 == s {
				return false
			}
			d = d2
		}
		s = d
	}
	return strings.Contains(s, secret)
}
