package session

import (
	"io"
	"net/http"
)

// maxBody bounds bodies when the server is used without the gateway in
// front (the gateway enforces its own, usually smaller, limit first).
const maxBody = 16 << 20

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, io.ErrUnexpectedEOF
	}
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}
