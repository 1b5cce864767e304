package mcpclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// challengeAuth is an Auth in the shape of oauth.Credential: Bearer or DPoP
// (a fake proof carrying the nonce), refresh on 401 invalid_token,
// step-up on 403 insufficient_scope, nonce adoption on any answer.
type challengeAuth struct {
	mu       sync.Mutex // guards the fields below
	dpop     bool
	token    string
	nonce    string
	scope    string
	applyErr error
	// refresh is the token a 401 invalid_token yields ("" fails with
	// loginErr, or declines when loginErr is nil)
	refresh  string
	loginErr error
	ops      []string
}

var errFakeLogin = errors.New("fake: not logged in")

func (a *challengeAuth) LoginRequired(err error) bool { return errors.Is(err, errFakeLogin) }

func (a *challengeAuth) Apply(_ context.Context, req *http.Request, body []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applyErr != nil {
		return a.applyErr
	}
	if a.dpop {
		req.Header.Set("Authorization", "DPoP "+a.token)
		req.Header.Set("DPoP", "proof;nonce="+a.nonce+";scope="+a.scope)
		return nil
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	return nil
}

func (a *challengeAuth) Handle(_ context.Context, resp *http.Response, op string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ops = append(a.ops, op)
	ch := strings.Join(resp.Header.Values("WWW-Authenticate"), ",")
	if n := resp.Header.Get("DPoP-Nonce"); n != "" && strings.Contains(ch, "use_dpop_nonce") && n != a.nonce {
		a.nonce = n
		return true, nil
	}
	switch {
	case resp.StatusCode == 401 && a.refresh != "":
		a.token, a.refresh = a.refresh, ""
		return true, nil
	case resp.StatusCode == 401 && a.loginErr != nil:
		return false, a.loginErr
	case resp.StatusCode == 403 && strings.Contains(ch, "insufficient_scope"):
		a.scope = "admin"
		return true, nil
	}
	return false, nil
}

// seen is what the server received on one attempt.
type seen struct {
	auth, proof string
	body        []byte
}

func TestAuthTransport(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`)
	type answer func(w http.ResponseWriter, r *http.Request, s seen) bool // true: answered
	cases := []struct {
		name     string
		auth     *challengeAuth
		server   answer
		status   int    // of the final answer (0: an error)
		attempts int    // sends the server saw
		wantAuth string // Authorization of the last send
		check    func(t *testing.T, err error, a *challengeAuth)
	}{
		{name: "bearer applied", auth: &challengeAuth{token: "t1"}, status: 200, attempts: 1, wantAuth: "Bearer t1"},
		{name: "dpop applied", auth: &challengeAuth{dpop: true, token: "t1"}, status: 200, attempts: 1, wantAuth: "DPoP t1"},
		{
			name: "401 invalid_token refreshes and retries", auth: &challengeAuth{token: "old", refresh: "new"},
			server: func(w http.ResponseWriter, r *http.Request, s seen) bool {
				if s.auth == "Bearer old" {
					w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
					w.WriteHeader(401)
					return true
				}
				return false
			},
			status: 200, attempts: 2, wantAuth: "Bearer new",
			check: func(t *testing.T, _ error, a *challengeAuth) {
				if len(a.ops) != 1 || a.ops[0] != "tools/call" {
					t.Errorf("Handle saw ops %v, want [tools/call]", a.ops)
				}
			},
		},
		{
			name: "403 insufficient_scope steps up", auth: &challengeAuth{dpop: true, token: "t"},
			server: func(w http.ResponseWriter, r *http.Request, s seen) bool {
				if s.auth != "" && !strings.Contains(s.proof, "admin") {
					w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="admin"`)
					w.WriteHeader(403)
					return true
				}
				return false
			},
			status: 200, attempts: 2,
		},
		{name: "nonce on 400", auth: &challengeAuth{dpop: true, token: "t"}, server: nonceOn(400), status: 200, attempts: 2},
		{name: "nonce on 401", auth: &challengeAuth{dpop: true, token: "t"}, server: nonceOn(401), status: 200, attempts: 2},
		{name: "nonce on 422", auth: &challengeAuth{dpop: true, token: "t"}, server: nonceOn(422), status: 200, attempts: 2},
		{
			name: "declined challenge handed back", auth: &challengeAuth{token: "t"},
			server: func(w http.ResponseWriter, r *http.Request, s seen) bool {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mcp"`) // not a step-up
				w.WriteHeader(403)
				io.WriteString(w, "no")
				return true
			},
			status: 403, attempts: 1,
		},
		{
			name: "attempt limit", auth: &challengeAuth{dpop: true, token: "t"},
			server: func(w http.ResponseWriter, r *http.Request, s seen) bool {
				// a fresh nonce every time: the client always retries
				w.Header().Set("DPoP-Nonce", "n"+s.proof)
				w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
				w.WriteHeader(401)
				return true
			},
			attempts: MaxAttempts,
			check: func(t *testing.T, err error, _ *challengeAuth) {
				var ae *AuthError
				if !errors.As(err, &ae) || !errors.Is(err, ErrTooManyAttempts) || ae.Attempts != MaxAttempts || ae.Status != 401 || errors.Is(err, ErrLoginRequired) {
					t.Errorf("err = %v (%#v), want an *AuthError after %d attempts", err, ae, MaxAttempts)
				}
			},
		},
		{
			name: "login required", auth: &challengeAuth{token: "t", loginErr: errFakeLogin},
			server: func(w http.ResponseWriter, r *http.Request, s seen) bool {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				w.WriteHeader(401)
				return true
			},
			attempts: 1,
			check: func(t *testing.T, err error, _ *challengeAuth) {
				var ae *AuthError
				if !errors.As(err, &ae) || !ae.LoginRequired || ae.Status != 401 || !errors.Is(err, ErrLoginRequired) || !errors.Is(err, errFakeLogin) {
					t.Errorf("err = %v, want a login-required *AuthError wrapping the Auth's error", err)
				}
			},
		},
		{
			name: "apply fails", auth: &challengeAuth{applyErr: errors.New("key missing")}, attempts: 0,
			check: func(t *testing.T, err error, _ *challengeAuth) {
				var ae *AuthError
				if !errors.As(err, &ae) || ae.Status != 0 || ae.LoginRequired || !strings.Contains(err.Error(), "key missing") {
					t.Errorf("err = %v, want an *AuthError with status 0", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []seen
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				s := seen{auth: r.Header.Get("Authorization"), proof: r.Header.Get("DPoP"), body: b}
				mu.Lock()
				got = append(got, s)
				mu.Unlock()
				if tc.server != nil && tc.server(w, r, s) {
					return
				}
				io.WriteString(w, "ok")
			}))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
			resp, err := AuthClient(srv.Client(), tc.auth).Do(req)
			if resp != nil {
				defer resp.Body.Close()
			}
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("status %d, want an error", resp.StatusCode)
			case tc.status != 0 && err != nil:
				t.Fatalf("err = %v, want HTTP %d", err, tc.status)
			case tc.status != 0 && resp.StatusCode != tc.status:
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if len(got) != tc.attempts {
				t.Fatalf("the server saw %d sends, want %d", len(got), tc.attempts)
			}
			for i, s := range got {
				if !bytes.Equal(s.body, body) {
					t.Errorf("send %d carried body %q, want the original", i+1, s.body)
				}
			}
			if tc.wantAuth != "" && got[len(got)-1].auth != tc.wantAuth {
				t.Errorf("last Authorization %q, want %q", got[len(got)-1].auth, tc.wantAuth)
			}
			if tc.check != nil {
				tc.check(t, unwrapAuth(err), tc.auth)
			}
		})
	}
}

// nonceOn answers status with a use_dpop_nonce challenge until the proof
// carries the nonce N1 (RFC 9449 §9: any 4xx may carry it).
func nonceOn(status int) func(w http.ResponseWriter, r *http.Request, s seen) bool {
	return func(w http.ResponseWriter, r *http.Request, s seen) bool {
		if strings.Contains(s.proof, "nonce=N1;") {
			return false
		}
		w.Header().Set("DPoP-Nonce", "N1")
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
		w.WriteHeader(status)
		return true
	}
}

// TestAuthTransportBodyLimit: a body over mcp.MaxMessageBytes is refused
// before anything is sent.
func TestAuthTransportBodyLimit(t *testing.T) {
	sent := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent = true }))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(make([]byte, mcp.MaxMessageBytes+1)))
	_, err := AuthClient(srv.Client(), &challengeAuth{token: "t"}).Do(req)
	if err == nil || !strings.Contains(err.Error(), "exceeds") || sent {
		t.Fatalf("err = %v, sent = %v; want a refusal before sending", err, sent)
	}
}

// TestAuthTransportRedirectKeepsCredential: a redirect to another origin
// is not followed, so the credential the AuthTransport applies never
// reaches it.
func TestAuthTransportRedirectKeepsCredential(t *testing.T) {
	var leaked bool
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = leaked || r.Header.Get("Authorization") != "" || r.Header.Get("DPoP") != ""
	}))
	defer evil.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	for _, a := range []*challengeAuth{{token: "secret"}, {dpop: true, token: "secret"}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
		_, err := AuthClient(srv.Client(), a).Do(req)
		if !errors.Is(err, origin.ErrOther) || leaked {
			t.Fatalf("err = %v, leaked = %v; want origin.ErrOther and nothing sent to the other origin", err, leaked)
		}
	}
}

// TestAuthTransportNilAuth: without Auth, requests pass unchanged.
func TestAuthTransportNilAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			w.WriteHeader(500)
		}
		w.WriteHeader(401)
	}))
	defer srv.Close()
	rt := &AuthTransport{}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("resp %v err %v; want the 401 handed back", resp, err)
	}
	resp.Body.Close()
}
