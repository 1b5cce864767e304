package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// The built-in authorization server's keys are read in-process, not over
// the network. Its issuer is the public URL, and a fetch of
// <public_url>/jwks behind a load balancer goes to a READY replica — but a
// replica is ready only once it has the keys: a cold cluster never became
// ready (found by the three-replica e2e bench). Every replica's built-in
// server serves the same key set (its store is shared: PostgreSQL), so its
// own handler answers for it.

// localKeysClient returns c with GET <publicURL>/jwks answered by as.
func localKeysClient(c *http.Client, publicURL string, as http.Handler) *http.Client {
	if as == nil {
		return c
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cc := *c
	cc.Transport = &localKeys{url: publicURL + "/jwks", as: as, next: next}
	return &cc
}

type localKeys struct {
	url  string
	as   http.Handler
	next http.RoundTripper
}

func (t *localKeys) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet || r.URL.String() != t.url {
		return t.next.RoundTrip(r)
	}
	w := &memoryResponse{header: http.Header{}, status: http.StatusOK}
	t.as.ServeHTTP(w, r)
	return &http.Response{
		Status: strconv.Itoa(w.status) + " " + http.StatusText(w.status), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()), Request: r,
	}, nil
}

// memoryResponse is the http.ResponseWriter of an in-process request; the
// key set is a few KiB, and at most maxLocalKeys bytes are kept.
type memoryResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

const maxLocalKeys = 1 << 20

func (m *memoryResponse) Header() http.Header { return m.header }

func (m *memoryResponse) WriteHeader(s int) {
	if !m.wrote {
		m.status, m.wrote = s, true
	}
}

func (m *memoryResponse) Write(b []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	if room := maxLocalKeys - m.body.Len(); len(b) > room {
		b = b[:max(room, 0)]
	}
	m.body.Write(b)
	return len(b), nil
}
