package session

import (
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
