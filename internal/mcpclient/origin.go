package mcpclient

import (
	"errors"
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
	resp, err := t.client().Do(req)
	return resp, unwrapAuth(err)
}

// client is t.HTTP pinned to its origin, authenticating through an
// AuthTransport over t.HTTP's own transport; built once.
func (t *Transport) client() *http.Client {
	t.clientOnce.Do(func() { t.authClient = AuthClient(t.HTTP, t.Auth) })
	return t.authClient
}

// AuthClient is a copy of c (nil: http.DefaultClient) that follows only
// same-origin redirects (origin.Pin) and authenticates every request with
// auth (an AuthTransport over c's transport; auth nil adds nothing).
func AuthClient(c *http.Client, auth Auth) *http.Client {
	pinned := origin.Pin(c)
	if auth != nil {
		pinned.Transport = &AuthTransport{Auth: auth, Base: pinned.Transport}
	}
	return pinned
}

// unwrapAuth returns the transport's own *AuthError without the
// *url.Error http.Client wraps it in: its text already says what failed,
// and callers branch on it.
func unwrapAuth(err error) error {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae
	}
	return err
}
