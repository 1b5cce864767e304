package session

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// maxBody bounds bodies when the server is used without the gateway in
// front (the gateway enforces its own, usually smaller, limit first).
const maxBody = mcp.MaxMessageBytes

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, io.ErrUnexpectedEOF
	}
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

// progressToken reads a request's progress token (params._meta, or the
// params member some clients use), to route its progress notifications.
func progressToken(params json.RawMessage) string {
	var p struct {
		Token json.RawMessage `json:"progressToken"`
		Meta  struct {
			Token json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	if p.Token != nil {
		return string(p.Token)
	}
	return string(p.Meta.Token)
}
