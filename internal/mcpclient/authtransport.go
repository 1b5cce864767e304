package mcpclient

// How the client authenticates a request: this file.
//
// Every HTTP request the client side sends to a protected MCP server (the
// Streamable HTTP POST, GET and DELETE of Transport, the HTTP+SSE stream and
// its POSTs, the broker's forwarded requests) goes through one AuthTransport:
//
//	buffer the body (at most mcp.MaxMessageBytes) → for each attempt:
//	clone the request → Auth.Apply (Bearer, or DPoP with a fresh proof)
//	→ send → a challenge (401, 403, or any 4xx carrying DPoP-Nonce)?
//	→ Auth.Handle (new nonce, refresh, login, step-up) → retry or hand the
//	answer back → at most MaxAttempts sends, then an *AuthError.
//
// It has the shape of golang.org/x/oauth2's Transport (a RoundTripper under
// an http.Client), so redirects stay the client's business: origin.Pin keeps
// them on the server's origin, and Auth.Apply refuses any other origin.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// MaxAttempts is the one bound on how often one request is sent while the
// server challenges it. Six covers the longest legitimate chain — a DPoP
// nonce, a refresh, the nonce of the new token, a step-up, its nonce — with
// one send to spare; a server that keeps challenging after that gets an
// *AuthError instead of an endless loop (oauth.Credential additionally bounds
// the logins per operation).
const MaxAttempts = 6

// ErrLoginRequired is matched (errors.Is) by every error of a request that
// failed because no usable credential exists and a person must log in
// (mcpgate login, or the broker's /oauth/login). The transport marks an
// Auth error this way when the Auth says so (LoginDetector); oauth.Credential
// does for oauth.ErrLoginRequired, which the error also still matches.
var ErrLoginRequired = errors.New("login required")

// ErrTooManyAttempts is matched by the *AuthError of a request that was
// still challenged after MaxAttempts sends.
var ErrTooManyAttempts = errors.New("the server kept challenging the credential")

// LoginDetector is implemented by an Auth that can tell which of its
// errors mean "log in first" (mcpclient cannot import the OAuth engine
// that defines them).
type LoginDetector interface {
	LoginRequired(err error) bool
}

// AcceptObserver is implemented by an Auth that wants to know when the
// server accepted a request: its answer was a success (2xx) and no
// challenge. oauth.Credential uses it so that its step-up guard counts
// only authorizations the server did not honour; a server that steps up
// now and then keeps working, one that refuses every token still stops.
type AcceptObserver interface {
	Accepted(op string)
}

// AuthError is a request the transport could not authenticate: Auth
// failed to apply credentials (Status 0) or to answer a challenge, or the
// server still challenged after MaxAttempts sends (Err nil).
type AuthError struct {
	// Op is the JSON-RPC method of the request ("response" for a
	// response, the HTTP method for a request without a JSON-RPC body).
	Op string
	// Status is the HTTP status of the last challenge; 0 when applying
	// the credential failed before anything was sent.
	Status int
	// Challenge holds the last answer's WWW-Authenticate values.
	Challenge []string
	// Attempts is the number of sends.
	Attempts int
	// LoginRequired: no usable credential; a person must log in.
	LoginRequired bool
	// Err is the Auth's error; nil when the attempt limit was reached.
	Err error
}

func (e *AuthError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	s := fmt.Sprintf("%s: the server still refused the credential after %d attempts (HTTP %d)", e.Op, e.Attempts, e.Status)
	if len(e.Challenge) > 0 {
		s += ", WWW-Authenticate: " + strings.Join(e.Challenge, ", ")
	}
	return s
}

// Unwrap lets errors.Is and errors.As see the Auth's error and the
// classes ErrLoginRequired and ErrTooManyAttempts.
func (e *AuthError) Unwrap() []error {
	var out []error
	if e.Err != nil {
		out = append(out, e.Err)
	} else {
		out = append(out, ErrTooManyAttempts)
	}
	if e.LoginRequired {
		out = append(out, ErrLoginRequired)
	}
	return out
}

// AuthTransport is an http.RoundTripper that authenticates each request
// with Auth and answers the server's challenges, replaying the body. A
// challenge Auth declines (retry false) is handed back as the response,
// body unread, so the caller reports it as it would any answer.
type AuthTransport struct {
	// Auth applies credentials and handles challenges (oauth.Credential);
	// nil sends requests unchanged.
	Auth Auth
	// Base sends each attempt; nil is http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper. It does not modify req: every
// attempt is a clone carrying its own copy of the body.
func (t *AuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Auth == nil {
		return t.base().RoundTrip(req)
	}
	body, err := replayableBody(req)
	if err != nil {
		return nil, err
	}
	op := operation(req, body)
	for attempt := 1; ; attempt++ {
		out := attemptOf(req, body)
		if err := t.Auth.Apply(req.Context(), out, body); err != nil {
			return nil, t.failed(op, nil, attempt, err)
		}
		resp, err := t.base().RoundTrip(out)
		if err != nil {
			return nil, err
		}
		if !challenged(resp) {
			t.accepted(op, resp)
			return resp, nil
		}
		if attempt >= MaxAttempts {
			drain(resp)
			return nil, &AuthError{Op: op, Status: resp.StatusCode, Challenge: resp.Header.Values("WWW-Authenticate"), Attempts: attempt}
		}
		retry, err := t.Auth.Handle(req.Context(), resp, op)
		if err != nil {
			drain(resp)
			return nil, t.failed(op, resp, attempt, err)
		}
		if !retry {
			return resp, nil
		}
		drain(resp)
	}
}

// accepted tells an AcceptObserver Auth about a successful answer.
func (t *AuthTransport) accepted(op string, resp *http.Response) {
	if o, ok := t.Auth.(AcceptObserver); ok && resp.StatusCode/100 == 2 {
		o.Accepted(op)
	}
}

func (t *AuthTransport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// failed wraps an Auth error, classifying "log in first".
func (t *AuthTransport) failed(op string, resp *http.Response, attempt int, err error) *AuthError {
	e := &AuthError{Op: op, Attempts: attempt, Err: err, LoginRequired: errors.Is(err, ErrLoginRequired)}
	if d, ok := t.Auth.(LoginDetector); ok && d.LoginRequired(err) {
		e.LoginRequired = true
	}
	if resp != nil {
		e.Status, e.Challenge = resp.StatusCode, resp.Header.Values("WWW-Authenticate")
	}
	return e
}

// challenged: an answer Auth must see. RFC 6750 §3 and RFC 9449 §7.1
// challenge with 401 (and 403 insufficient_scope); a resource server may
// demand a DPoP nonce (RFC 9449 §9, use_dpop_nonce) with any 4xx.
func challenged(resp *http.Response) bool {
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return true
	case resp.StatusCode/100 == 4:
		return resp.Header.Get("DPoP-Nonce") != ""
	}
	return false
}

// replayableBody reads the request body once (every attempt sends a copy,
// and a DPoP proof may digest it), at most mcp.MaxMessageBytes.
func replayableBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, mcp.MaxMessageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(b) > mcp.MaxMessageBytes {
		return nil, fmt.Errorf("the request body exceeds %d bytes, the largest MCP message mcpgate sends", mcp.MaxMessageBytes)
	}
	return b, nil
}

// attemptOf is one send of req: a clone with a fresh reader over body.
func attemptOf(req *http.Request, body []byte) *http.Request {
	out := req.Clone(req.Context())
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
	}
	return out
}

// operation names the request for Auth.Handle (its step-up guard counts
// logins per operation): the JSON-RPC method, "response" for a response,
// else the HTTP method.
func operation(req *http.Request, body []byte) string {
	if len(body) > 0 {
		if env, err := mcp.PeekOne(body); err == nil {
			if env.Method != "" {
				return env.Method
			}
			return "response"
		}
	}
	return req.Method
}

// drain reads a little of an answer that is not passed on and closes it,
// so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
