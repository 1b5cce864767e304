package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// The stdio client's handshake. The era is decided by
// mcpclient.Negotiate, the one negotiation of the client half: against a
// session-era or HTTP+SSE server the client's own initialize is the
// handshake (forwarded, its answer delivered); against a 2026-07-28
// server the bridge answers the initialize itself from the
// DiscoverResult and, for a session-era client, bridges the eras from
// then on (every request gains the per-request _meta).

// initialize handles the client's initialize request.
func (b *Bridge) initialize(ctx context.Context, env mcp.Envelope, deliver func([]byte)) error {
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
		Capabilities    json.RawMessage `json:"capabilities"`
	}
	_ = json.Unmarshal(env.Params, &p)
	caps := b.declared(p.Capabilities)
	raw := withCapabilities(env.Raw, p.Capabilities, caps)
	b.mu.Lock()
	b.initRaw = slices.Clone(raw)
	b.clientInfo, b.clientCaps = p.ClientInfo, caps
	b.mu.Unlock()

	got, err := mcpclient.Negotiate(ctx, mcpclient.Negotiation{
		Transport: b.t, Version: b.o.ProtocolVersion, Mode: b.o.Mode, Meta: b.meta,
		Handshake: func(ctx context.Context, _ string) (string, error) { return b.forwardInitialize(ctx, raw, deliver) },
	})
	switch {
	case err != nil:
		return err
	case got.Era == mcp.EraStateless:
		b.answerFromDiscover(env.ID, p.ProtocolVersion, got, deliver)
	case got.Version != "":
		b.startListening()
	}
	return nil
}

// forwardInitialize posts the client's initialize and delivers the
// answer; it returns the revision the server chose ("" for an error
// answer, which the client gets as it is).
func (b *Bridge) forwardInitialize(ctx context.Context, raw []byte, deliver func([]byte)) (string, error) {
	var chosen string
	err := b.t.Post(ctx, raw, func(m []byte) {
		var r struct {
			Result *struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
		}
		if json.Unmarshal(m, &r) == nil && r.Result != nil {
			chosen = r.Result.ProtocolVersion
		}
		deliver(m)
	})
	return chosen, err
}

// answerFromDiscover answers the client's initialize from the server's
// DiscoverResult. A session-era client gets its own revision back (or
// 2025-11-25 for one mcpgate does not speak) and the eras are bridged; a
// 2026-07-28 client gets the negotiated revision.
func (b *Bridge) answerFromDiscover(id json.RawMessage, clientVersion string, got mcpclient.Negotiated, deliver func([]byte)) {
	var disc struct {
		Capabilities json.RawMessage `json:"capabilities"`
		ServerInfo   json.RawMessage `json:"serverInfo"`
		Instructions string          `json:"instructions,omitempty"`
		Meta         struct {
			ServerInfo json.RawMessage `json:"io.modelcontextprotocol/serverInfo"`
		} `json:"_meta"`
	}
	_ = json.Unmarshal(got.Discover, &disc)
	version := clientVersion
	switch {
	case mcp.EraOf(clientVersion) == mcp.EraStateless:
		version = got.Version
	case !mcp.IsSupported(clientVersion):
		version = mcp.V20251125
	}
	if mcp.EraOf(clientVersion) != mcp.EraStateless {
		b.mu.Lock()
		b.bridging = true
		b.mu.Unlock()
	}
	info := cmpOr(disc.ServerInfo, disc.Meta.ServerInfo, json.RawMessage(`{"name":"remote","version":"unknown"}`))
	caps := cmpOr(disc.Capabilities, json.RawMessage(`{}`))
	result := map[string]any{"protocolVersion": version, "capabilities": caps, "serverInfo": info}
	if disc.Instructions != "" {
		result["instructions"] = disc.Instructions
	}
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	deliver(out)
}

// cmpOr is the first non-nil of vs.
func cmpOr(vs ...json.RawMessage) json.RawMessage {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

// meta is the 2026-07-28 per-request _meta on behalf of the stdio client.
func (b *Bridge) meta(version string) map[string]any {
	b.mu.Lock()
	info, caps := b.clientInfo, b.clientCaps
	b.mu.Unlock()
	if info == nil {
		info = json.RawMessage(`{"name":"mcpgate-connect","version":"1"}`)
	}
	if caps == nil {
		caps = b.declared(nil)
	}
	return mcpclient.RequestMeta(version, info, caps)
}

// withMeta adds the modern _meta to a message from a session-era client
// (replacing the keys it may have set).
func (b *Bridge) withMeta(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	params := map[string]json.RawMessage{}
	if p, ok := m["params"]; ok && string(p) != "null" {
		if json.Unmarshal(p, &params) != nil {
			return raw
		}
	}
	meta := map[string]json.RawMessage{}
	if mm, ok := params["_meta"]; ok {
		_ = json.Unmarshal(mm, &meta)
	}
	_, v := b.t.Protocol()
	for k, val := range b.meta(v) {
		enc, _ := json.Marshal(val)
		meta[k] = enc
	}
	params["_meta"], _ = json.Marshal(meta)
	m["params"], _ = json.Marshal(params)
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

// startListening opens the optional GET stream once (session era).
func (b *Bridge) startListening() {
	b.mu.Lock()
	ctx := b.runCtx
	if b.listening || ctx == nil {
		b.mu.Unlock()
		return
	}
	b.listening = true
	b.mu.Unlock()
	go func() {
		if err := b.t.Listen(ctx, func(m []byte) { b.write(m) }); err != nil {
			b.log.Info("the server's event stream ended", "err", err)
		}
	}()
}

// reinitialize replays the client's initialize after a 404 on the session
// (the answer is not shown to the client, which already has one).
func (b *Bridge) reinitialize(ctx context.Context) error {
	b.mu.Lock()
	raw := b.initRaw
	b.mu.Unlock()
	if raw == nil {
		return errors.New("no initialize to replay")
	}
	var failed error
	if err := b.t.Post(ctx, raw, func(m []byte) {
		var r struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(m, &r) == nil && r.Error != nil {
			failed = fmt.Errorf("initialize: %s", r.Error)
		}
	}); err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	note := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return b.t.Post(ctx, note, func([]byte) {})
}
