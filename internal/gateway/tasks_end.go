package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// The end of a task's binding (see tasks.go): a terminal status in a
// reply or a notification, a cancellation through the gateway, and the
// cancellation of a task the gateway refused to bind.

// terminalTaskStatus reports whether status is terminal. Tasks extension
// (specification/draft/tasks.md) §Task Status: "Terminal states:
// completed, failed, cancelled"; 2025-11-25 basic/utilities/tasks has the
// same three.
func terminalTaskStatus(status string) bool {
	return status == "completed" || status == "failed" || status == "cancelled"
}

// noteTaskEnd shortens the caller's bindings of the tasks obj shows in a
// terminal status (a Task, a DetailedTask, or a CreateTaskResult's task),
// and of cancelled, the task of a tasks/cancel this reply answers with a
// result. Only the caller's own bindings are touched (taskBinder.ended).
func (x *exchange) noteTaskEnd(obj json.RawMessage, cancelled string) {
	own := x.taskOwner()
	if cancelled != "" {
		x.m.tasks.ended(cancelled, own)
	}
	for _, t := range []json.RawMessage{obj, nil} {
		if t == nil {
			t, _ = exactMember(obj, "task")
		}
		id, ok := exactString(t, "taskId")
		if !ok {
			continue
		}
		if status, _ := exactString(t, "status"); terminalTaskStatus(status) {
			x.m.tasks.ended(id, own)
		}
	}
}

// cancelOrphan asks the upstream to cancel task id, which it created for
// this caller's tools/call but the gateway refused to bind (a full
// budget): nobody can poll or cancel it through the gateway, so it would
// otherwise run and be kept until its own ttl. Best effort and bounded: at
// most maxOrphanCancels in flight per upstream, each within
// orphanCancelTimeout, sent as the caller (same session, identity headers
// and protocol headers, never the caller's credentials), answer discarded.
func (x *exchange) cancelOrphan(id string) {
	release, ok := x.m.tasks.cancelSlot()
	if !ok {
		return
	}
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	params := map[string]any{"taskId": id}
	for i := range x.msgs {
		if e := &x.msgs[i]; e.Method == "tools/call" {
			if meta, ok := exactMember(e.Params, "_meta"); ok {
				params["_meta"] = meta // the 2026-07-28 protocol version and client info
			}
			break
		}
	}
	reqID := `"mcpgate-cancel-` + hex.EncodeToString(rid[:]) + `"`
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(reqID), "method": "tasks/cancel", "params": params})
	if err != nil {
		release()
		return
	}
	h := make(http.Header, len(x.r.Header))
	for k, v := range x.r.Header {
		ck := http.CanonicalHeaderKey(k)
		if !stripped[ck] && !slices.Contains(x.m.stripHeaders, ck) && ck != "Content-Length" && ck != http.CanonicalHeaderKey(mcp.HeaderMethod) &&
			ck != http.CanonicalHeaderKey(mcp.HeaderName) && !hasPrefixFold(ck, mcp.HeaderParamPrefix) {
			h[ck] = v
		}
	}
	x.upstreamSession(h)
	if x.r.Header.Get(mcp.HeaderMethod) != "" { // 2026-07-28: routing headers must match the body
		h.Set(mcp.HeaderMethod, "tasks/cancel")
		h.Set(mcp.HeaderName, id)
	}
	base := context.WithoutCancel(x.r.Context())
	req := upstream.NewRequest(x.upstreamCaller(), upstream.NoFilter) // the answer is discarded
	req.ID = []byte(reqID)
	handler := x.m.handler
	url, host, remote := *x.r.URL, x.r.Host, x.r.RemoteAddr
	go func() {
		defer release()
		ctx, cancel := context.WithTimeout(base, orphanCancelTimeout)
		defer cancel()
		out, err := http.NewRequestWithContext(ctx, http.MethodPost, url.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		out.Header = h
		out.ContentLength = int64(len(body))
		out.Host, out.RemoteAddr = host, remote
		handler.ServeMCP(&discardWriter{h: http.Header{}}, out, req)
	}()
	x.auditTask("tasks/cancel", id, "", "orphan_cancel", "the gateway refused to bind the task and asked the upstream to cancel it", 0)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && http.CanonicalHeaderKey(s[:len(prefix)]) == http.CanonicalHeaderKey(prefix)
}

// discardWriter is the ResponseWriter of a request whose answer nobody
// reads.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}
