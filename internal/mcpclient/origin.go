package mcpclient

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/mcpgate/mcpgate/internal/origin"
)

// do sends one transport request (Streamable HTTP POST, GET, DELETE; the
// HTTP+SSE stream and its POSTs). Every request carries the server's
// credentials (Auth, Headers), so it must go to the origin of t.URL, and a
// redirect may not leave that origin: the client is pinned with
// origin.Pin whatever client the caller configured.
func (t *Transport) do(req *http.Request) (*http.Response, error) {
	base, err := url.Parse(t.URL)
	if err != nil || !origin.Same(base, req.URL) {
		return nil, fmt.Errorf("%w: refusing to send a request for %s to %s", origin.ErrOther, origin.OfString(t.URL), origin.Of(req.URL))
	}
	return origin.Pin(t.HTTP).Do(req)
}
