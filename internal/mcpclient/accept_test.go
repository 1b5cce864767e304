package mcpclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// acceptAuth records Accepted calls and never retries.
type acceptAuth struct{ accepted []string }

func (a *acceptAuth) Apply(context.Context, *http.Request, []byte) error { return nil }
func (a *acceptAuth) Handle(context.Context, *http.Response, string) (bool, error) {
	return false, nil
}
func (a *acceptAuth) Accepted(op string) { a.accepted = append(a.accepted, op) }

// TestAuthTransportTellsAcceptance: a 2xx answer is reported to an
// AcceptObserver with the request's operation; a challenge or an error
// status is not (the step-up guard must not reset on a refusal).
func TestAuthTransportTellsAcceptance(t *testing.T) {
	for status, want := range map[int]string{200: "tools/call", 202: "tools/call", 401: "", 403: "", 404: "", 500: ""} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
		a := &acceptAuth{}
		c := AuthClient(srv.Client(), a)
		resp, err := c.Post(srv.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}`))
		if err == nil {
			resp.Body.Close()
		}
		srv.Close()
		if got := strings.Join(a.accepted, ","); got != want {
			t.Errorf("HTTP %d: Accepted(%q), want %q", status, got, want)
		}
	}
}
