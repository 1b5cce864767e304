package mcp

import (
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// An MCP endpoint's answer is never a document a browser renders or runs.
//
// mcpgate relays answers chosen by parties it trusts less than its own
// origin: the broker's remotes (each holding only its own credential,
// while the broker's origin can use all of them) and the gateway's
// upstreams (while the gateway's origin serves the built-in authorization
// server's pages and cookies). If such an answer were rendered as HTML or
// SVG on that origin, its script would act with the origin's authority.
// Streamable HTTP (MCP 2026-07-28, Transports) answers a POST with
// "Content-Type: text/event-stream" or "Content-Type: application/json",
// a GET with text/event-stream or 405, and a notification or response
// with 202 and no body; nothing else is an MCP answer, so nothing else is
// relayed as one.

// ConfinementPolicy is the Content-Security-Policy of every relayed MCP
// answer: a browser that loads it anyway treats it as a sandboxed,
// unique-origin document that may load nothing and be framed by no one.
const ConfinementPolicy = "sandbox; default-src 'none'; frame-ancestors 'none'"

// answerDangerous are response headers by which a browser lets an answer
// act for the origin that serves it (state, navigation, preloads, origin
// policies); an MCP answer never needs them, so none survives, whoever
// set it. CORS headers are not among them: the relay sets its own for its
// allowed origins, and copies none from upstream (each relay allow-lists
// the upstream headers it passes on).
var answerDangerous = []string{"Set-Cookie", "Set-Cookie2", "Clear-Site-Data", "Refresh", "Link",
	"Content-Disposition", "Content-Location", "Service-Worker-Allowed", "Strict-Transport-Security",
	"Alt-Svc", "Origin-Agent-Cluster", "Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy",
	"Permissions-Policy", "Supports-Loading-Mode"}

// ConfineAnswer prepares the header h of a relayed MCP answer before it is
// written: Content-Type stays only when it is application/json or
// text/event-stream (anything else, or none, which Go's server would
// sniff, becomes application/octet-stream), and the answer carries
// ConfinementPolicy, X-Content-Type-Options: nosniff and none of the
// headers by which a browser lets a response act for the origin (cookies,
// Clear-Site-Data, Refresh, Link...). It reports whether the
// original type was an MCP one; callers refuse any body that was not
// (ConfinedError), and send a 202 or an empty body with its status only.
func ConfineAnswer(h http.Header) (mcpType bool) {
	for _, k := range answerDangerous {
		h.Del(k)
	}
	h.Set("Content-Security-Policy", ConfinementPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err == nil && (mt == "application/json" || mt == "text/event-stream") {
		return true
	}
	h.Set("Content-Type", "application/octet-stream")
	return false
}

// ConfinedError is the message of the JSON-RPC error that replaces an
// answer of another media type.
func ConfinedError(status int, contentType string) string {
	if contentType == "" {
		contentType = "none"
	}
	return fmt.Sprintf("the MCP server answered HTTP %d with Content-Type %s, which is not an MCP answer (application/json or text/event-stream); mcpgate does not relay it",
		status, strings.ToValidUTF8(truncate(contentType, 100), "?"))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// CheckFetch refuses a request a browser made to load a page or a page's
// resource (Fetch Metadata: Sec-Fetch-Mode navigate, or a Sec-Fetch-Dest
// other than "empty", which fetch(), XMLHttpRequest and EventSource use;
// without Fetch Metadata, an Accept naming text/html). MCP clients fetch;
// an endpoint that injects credentials for whoever calls it must not let
// a link, a location change, an iframe or a <script src> make it call the
// server.
func CheckFetch(h http.Header) error {
	mode, dest := h.Get("Sec-Fetch-Mode"), h.Get("Sec-Fetch-Dest")
	switch {
	case mode == "navigate" || mode == "nested-navigate":
		return fmt.Errorf("this MCP endpoint does not serve browser navigations (Sec-Fetch-Mode: %s, Sec-Fetch-Dest: %s); MCP clients fetch it with Accept: application/json, text/event-stream", mode, dest)
	case dest != "" && dest != "empty":
		return fmt.Errorf("this MCP endpoint does not serve page resources or navigations (Sec-Fetch-Dest: %s); MCP clients fetch it with Accept: application/json, text/event-stream", dest)
	case acceptsHTML(h.Values("Accept")):
		return fmt.Errorf("this MCP endpoint does not serve browser navigations (Accept names text/html); MCP clients fetch it with Accept: application/json, text/event-stream")
	}
	return nil
}

func acceptsHTML(vs []string) bool {
	for _, v := range vs {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
			if mt == "text/html" || mt == "application/xhtml+xml" {
				return true
			}
		}
	}
	return false
}
