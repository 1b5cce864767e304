package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Era negotiation: the one place the client half decides which protocol
// era and revision a server speaks (issue 13 item 2). `mcpgate call`
// (Client.Connect) and `mcpgate connect` (bridge) both run it.
//
// 2026-07-28 basic/transports/streamable-http §Backward Compatibility:
// "A client that supports both modern (per-request-metadata) MCP versions
// and a legacy version that requires an initialize handshake MAY detect
// which era the server implements by attempting a modern request first.
// On 400 Bad Request, the client SHOULD inspect the response body before
// falling back: modern servers also use 400 for
// UnsupportedProtocolVersionError, MissingRequiredClientCapabilityError,
// and header-validation failures. If the body contains a recognized
// modern JSON-RPC error, the server speaks a modern version of MCP — retry
// using the advertised supported versions or correct the request, rather
// than falling back. If the body is empty or is not a recognized modern
// JSON-RPC error, fall back to initialize and continue with the legacy
// version for subsequent requests." The compatibility matrix
// (basic/versioning) adds: "the client falls back to initialize (and
// possibly further to the deprecated HTTP+SSE transport)".
//
// The steps, in order:
//
//  1. probe: server/discover at the forced revision or the newest one;
//  2. classify the answer (a DiscoverResult, a recognized modern error, or
//     a legacy answer);
//  3. choose the newest revision both sides speak;
//  4. for a session-era choice, the caller's initialize handshake, and on
//     400/404/405 to it (not a Streamable HTTP endpoint) the HTTP+SSE
//     transport at the same URL (2025-03-26 §Backwards Compatibility).

// Negotiated is what Negotiate found.
type Negotiated struct {
	Era     mcp.Era
	Version string // "" when the server's initialize answer was an error the handshake passed on
	// Discover is the server's DiscoverResult (EraStateless only).
	Discover json.RawMessage
}

// Negotiation configures Negotiate.
type Negotiation struct {
	Transport *Transport
	// Version forces a revision; "" negotiates (2026-07-28 first). A
	// forced revision the server does not offer is an error.
	Version string
	// Mode is the remote transport: "" or "auto" (Streamable HTTP, then
	// HTTP+SSE when the handshake is refused with 400/404/405),
	// "streamable", or "sse" (HTTP+SSE only).
	Mode string
	// Meta is the 2026-07-28 per-request _meta of the probe at version
	// (protocol version, clientInfo, clientCapabilities).
	Meta func(version string) map[string]any
	// Handshake runs initialize offering version and returns the revision
	// the server chose. The bridge forwards its stdio client's initialize
	// (and its answer) here; Client sends its own.
	Handshake func(ctx context.Context, version string) (string, error)
}

// probeID is the JSON-RPC id of the server/discover probe.
const probeID = `"mcpgate-discover"`

// Negotiate decides the era and revision, leaving the transport set to
// them.
func Negotiate(ctx context.Context, n Negotiation) (Negotiated, error) {
	if n.Mode == "sse" {
		if err := n.Transport.ConnectLegacy(ctx); err != nil {
			return Negotiated{}, err
		}
		return n.handshake(ctx, n.Version)
	}
	if n.Version != "" && mcp.EraOf(n.Version) != mcp.EraStateless {
		return n.handshake(ctx, n.Version)
	}
	want := n.Version
	if want == "" {
		want = mcp.V20260728
	}
	a, err := n.probe(ctx, want)
	if err != nil {
		return Negotiated{}, err
	}
	if a.legacy {
		if n.Version != "" {
			return Negotiated{}, fmt.Errorf("the server does not speak MCP %s (it answered server/discover as a server of the initialize era)", n.Version)
		}
		return n.handshake(ctx, "")
	}
	best, err := n.choose(a.offered)
	if err != nil {
		return Negotiated{}, err
	}
	if mcp.EraOf(best) != mcp.EraStateless {
		return n.handshake(ctx, best)
	}
	if a.discover == nil || best != want {
		// the server named its versions in an error: ask again at the
		// chosen one for its DiscoverResult
		if a, err = n.probe(ctx, best); err != nil {
			return Negotiated{}, err
		}
		if a.discover == nil {
			return Negotiated{}, fmt.Errorf("the server refused server/discover at MCP %s, a version it offered", best)
		}
	}
	return Negotiated{Era: mcp.EraStateless, Version: best, Discover: a.discover}, nil
}

// answer is a classified probe answer: a DiscoverResult (discover and
// offered set), a recognized UnsupportedProtocolVersionError (offered
// set), or a legacy server.
type answer struct {
	discover json.RawMessage
	offered  []string
	legacy   bool
}

// probe sends server/discover at version and classifies the answer.
func (n *Negotiation) probe(ctx context.Context, version string) (answer, error) {
	t := n.Transport
	t.SetProtocol(mcp.EraStateless, version)
	var meta map[string]any
	if n.Meta != nil {
		meta = n.Meta(version)
	}
	msg, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(probeID), "method": "server/discover",
		"params": map[string]any{"_meta": meta}})
	if err != nil {
		return answer{}, err
	}
	var result json.RawMessage
	var rpcErr *RPCError
	perr := t.Post(ctx, msg, func(m []byte) {
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *RPCError       `json:"error"`
		}
		if json.Unmarshal(m, &r) == nil && string(r.ID) == probeID {
			result, rpcErr = r.Result, r.Error
		}
	})
	if perr != nil {
		return classifyFailure(perr)
	}
	if rpcErr != nil {
		return classifyError(rpcErr)
	}
	return classifyResult(result), nil
}

// classifyResult: "a result without supportedVersions is not a
// DiscoverResult" — some legacy servers answer an unknown method with an
// empty result.
func classifyResult(result json.RawMessage) answer {
	var d struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if json.Unmarshal(result, &d) != nil || len(d.SupportedVersions) == 0 {
		return answer{legacy: true}
	}
	return answer{discover: result, offered: d.SupportedVersions}
}

// classifyError: UnsupportedProtocolVersionError names the versions to
// retry with; the other errors defined by 2026-07-28 (header mismatch,
// missing client capability) identify a modern server refusing this
// request, which falling back would not fix; anything else is a legacy
// server's.
func classifyError(e *RPCError) (answer, error) {
	switch e.Code {
	case mcp.CodeUnsupportedProtocolVersion:
		var d mcp.UnsupportedVersionData
		_ = json.Unmarshal(e.Data, &d)
		if len(d.Supported) == 0 {
			return answer{}, fmt.Errorf("server/discover: the server rejected the protocol version without naming the ones it supports: %w", e)
		}
		return answer{offered: d.Supported}, nil
	case mcp.CodeHeaderMismatch, mcp.CodeMissingRequiredClientCapability:
		return answer{}, fmt.Errorf("server/discover: the server speaks MCP 2026-07-28 but refused the probe: %w", e)
	}
	return answer{legacy: true}, nil
}

// classifyFailure: a 4xx that is not an authentication failure (401, 403)
// identifies a legacy server; a 5xx, an authentication or network
// failure is the caller's error.
func classifyFailure(err error) (answer, error) {
	var he *HTTPError
	if errors.As(err, &he) && he.Status >= 400 && he.Status < 500 && he.Status != 401 && he.Status != 403 {
		return answer{legacy: true}, nil
	}
	return answer{}, err
}

// choose is the newest of offered that mcpgate speaks (the forced version
// when there is one).
func (n *Negotiation) choose(offered []string) (string, error) {
	if n.Version != "" {
		if !slices.Contains(offered, n.Version) {
			return "", fmt.Errorf("the server does not speak MCP %s (it offers %s)", n.Version, strings.Join(offered, ", "))
		}
		return n.Version, nil
	}
	for _, v := range mcp.Supported() { // newest first
		if slices.Contains(offered, v) {
			return v, nil
		}
	}
	return "", fmt.Errorf("the server speaks MCP %s; mcpgate speaks %s", strings.Join(offered, ", "), strings.Join(mcp.Supported(), ", "))
}

// handshake runs the caller's initialize over Streamable HTTP and, in
// auto mode, over HTTP+SSE when the endpoint refuses it as no Streamable
// HTTP endpoint does (400, 404, 405).
func (n *Negotiation) handshake(ctx context.Context, version string) (Negotiated, error) {
	t := n.Transport
	if !t.Legacy() {
		t.SetProtocol(mcp.EraSession, "")
	}
	chosen, err := n.Handshake(ctx, version)
	var he *HTTPError
	if err != nil && (n.Mode == "" || n.Mode == "auto") && !t.Legacy() && errors.As(err, &he) &&
		(he.Status == 400 || he.Status == 404 || he.Status == 405) {
		if lerr := t.ConnectLegacy(ctx); lerr != nil {
			return Negotiated{}, fmt.Errorf("%w (and HTTP+SSE: %v)", err, lerr)
		}
		chosen, err = n.Handshake(ctx, version)
	}
	if err != nil {
		return Negotiated{}, err
	}
	era, _ := t.Protocol()
	t.SetProtocol(era, chosen)
	return Negotiated{Era: era, Version: chosen}, nil
}

// The 2026-07-28 per-request _meta keys (basic/index §_meta): "every
// request carries its protocol version", the client's identity and its
// capabilities.
const (
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
)

// RequestMeta is the 2026-07-28 per-request _meta of a client with info
// and capabilities caps (each a JSON value) at version.
func RequestMeta(version string, info, caps any) map[string]any {
	return map[string]any{mcp.MetaProtocolVersion: version, MetaClientInfo: info, MetaClientCapabilities: caps}
}
