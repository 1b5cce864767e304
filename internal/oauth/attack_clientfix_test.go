package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// thief records every request that reaches it.
type thief struct {
	mu  sync.Mutex // guards got
	got []string
	srv *httptest.Server
}

func newThief(t *testing.T) *thief {
	th := &thief{}
	th.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		th.mu.Lock()
		th.got = append(th.got, fmt.Sprintf("%s %s auth=%q dpop=%q", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("DPoP")))
		th.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		// an answer that would pass for every endpoint's
		io.WriteString(w, `{"access_token":"stolen","token_type":"DPoP","request_uri":"urn:x","expires_in":60,"client_id":"x","device_code":"d","verification_uri":"https://x/"}`)
	}))
	t.Cleanup(th.srv.Close)
	return th
}

func (th *thief) requests() []string {
	th.mu.Lock()
	defer th.mu.Unlock()
	return append([]string(nil), th.got...)
}

// TestEngineCredentialRequestsStayOnOrigin: token (login and refresh),
// PAR, device authorization, revocation and registration requests carry a
// client secret, a DPoP proof or a grant. A redirect to another origin
// (other port, other name for the same host, [::1]) is refused whatever
// its status, nothing reaches the target, and no answer of a redirect
// target is taken as the endpoint's (revocation reports failure).
func TestEngineCredentialRequestsStayOnOrigin(t *testing.T) {
	th := newThief(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(th.srv.URL, "http://"))
	targets := map[string]string{
		"other port":      th.srv.URL + "/steal",
		"localhost name":  "http://localhost:" + port + "/steal",
		"scheme-relative": "//127.0.0.1:" + port + "/steal",
	}
	var target string
	var status int
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, status)
	}))
	defer as.Close()
	md := &ServerMetadata{Issuer: as.URL, TokenEndpoint: as.URL + "/token", PAREndpoint: as.URL + "/par",
		RevocationEndpoint: as.URL + "/revoke", RegistrationEndpoint: as.URL + "/register", DeviceAuthorizationEndpoint: as.URL + "/device"}
	secret := &Client{ID: "cid", Secret: "CLIENTSECRET", AuthMethod: "client_secret_basic"}
	key, _ := NewDPoPKey()
	calls := map[string]func(e *Engine) error{
		"token": func(e *Engine) error {
			_, err := e.TokenRequest(context.Background(), md, secret, url.Values{"grant_type": {"authorization_code"}, "code": {"c"}}, key, nil)
			return err
		},
		"refresh": func(e *Engine) error {
			_, err := e.Refresh(context.Background(), md, secret, &Token{RefreshToken: "rt"}, "", nil)
			return err
		},
		"par": func(e *Engine) error {
			_, err := e.post(context.Background(), md.PAREndpoint, "pushed authorization request endpoint", md, secret, url.Values{}, key, &struct{}{})
			return err
		},
		"device": func(e *Engine) error {
			_, err := e.post(context.Background(), md.DeviceAuthorizationEndpoint, "device authorization endpoint", md, secret, url.Values{}, nil, &struct{}{})
			return err
		},
		"revoke": func(e *Engine) error { return e.Revoke(context.Background(), md, secret, "rt", "refresh_token") },
		"register": func(e *Engine) error {
			_, _, err := e.Register(context.Background(), md, "http://127.0.0.1:1/callback", false)
			return err
		},
	}
	for tname, tgt := range targets {
		for _, st := range []int{301, 302, 303, 307, 308} {
			for cname, call := range calls {
				t.Run(fmt.Sprintf("%s/%d/%s", tname, st, cname), func(t *testing.T) {
					target, status = tgt, st
					before := len(th.requests())
					err := call(testEngine(as.URL))
					if got := th.requests()[before:]; len(got) > 0 {
						t.Fatalf("a request reached the other origin: %v (err %v)", got, err)
					}
					if err == nil {
						t.Fatal("the redirect target's answer was taken as the endpoint's answer (no error)")
					}
				})
			}
		}
	}
}

// TestEngineSameOriginRedirect: a 307/308 within the endpoint's origin is
// still followed with method and body; a 302/303 on the same origin, which
// would turn the POST into a GET without the grant, is refused.
func TestEngineSameOriginRedirect(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token307":
			http.Redirect(w, r, "/token", 307)
		case "/token302":
			http.Redirect(w, r, "/token", 302)
		case "/token":
			r.ParseForm()
			if r.Method != http.MethodPost || r.PostForm.Get("code") != "c" {
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request"})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer"})
		}
	}))
	defer srv.Close()
	e := testEngine(srv.URL)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"c"}}
	c := &Client{ID: "cid", AuthMethod: "none"}
	if tok, err := e.TokenRequest(context.Background(), &ServerMetadata{Issuer: srv.URL, TokenEndpoint: srv.URL + "/token307"}, c, form, nil, nil); err != nil || tok.AccessToken != "at" {
		t.Fatalf("same-origin 307: %v %v", tok, err)
	}
	_, err := e.TokenRequest(context.Background(), &ServerMetadata{Issuer: srv.URL, TokenEndpoint: srv.URL + "/token302"}, c, form, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "makes it a GET") {
		t.Fatalf("same-origin 302 (POST becomes GET): %v", err)
	}
}

// TestGuardNameNeverUnlocksAClass: only a server URL that names a class
// itself (IP literal, localhost) allows it; a host name that resolves to
// loopback (here through /etc/hosts; in the attack, one extra A record
// next to the public one) allows public addresses only, both for URLs
// learned from the server and at dial time.
func TestGuardNameNeverUnlocksAClass(t *testing.T) {
	var name string
	for _, n := range []string{"vm", "runsc", "localhost.localdomain", "ip6-localhost"} {
		if addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", n); err == nil && len(addrs) > 0 && addrs[0].IsLoopback() {
			name = n
			break
		}
	}
	if name == "" {
		t.Skip("no host name other than localhost resolves to loopback here")
	}
	g := NewGuard("https://"+name+":18301/mcp", false, false)
	for _, u := range []string{"https://127.0.0.1:18302/internal/admin?action=delete", "https://[::1]:18302/", "https://localhost:18302/"} {
		if err := g.CheckURL(u, "protected resource metadata"); err == nil {
			t.Errorf("server %s: %s allowed", name, u)
		}
	}
	if err := g.Control("tcp", "127.0.0.1:18302", nil); err == nil {
		t.Errorf("server %s: dial to 127.0.0.1 allowed", name)
	}
	if err := g.CheckURL("https://"+name+":18301/mcp", "MCP server URL"); err == nil || !strings.Contains(err.Error(), "--allow-private-urls") {
		t.Errorf("the server's own name resolving to loopback: %v", err)
	}
	// literals and localhost still allow their class; --allow-private-urls everything
	for _, srv := range []string{"http://127.0.0.1:1/mcp", "http://localhost:1/mcp", "http://[::1]:1/mcp", "http://mcp.localhost:1/mcp"} {
		if err := NewGuard(srv, false, false).Control("tcp", "127.0.0.1:2", nil); err != nil {
			t.Errorf("server %s: loopback refused: %v", srv, err)
		}
	}
	if err := NewGuard("http://10.1.2.3/mcp", false, false).Control("tcp", "10.9.9.9:443", nil); err != nil {
		t.Errorf("private literal server: %v", err)
	}
	if err := NewGuard("https://"+name+"/mcp", false, true).CheckURL("https://127.0.0.1/", "x"); err != nil {
		t.Errorf("--allow-private-urls: %v", err)
	}
	// plain http is allowed by the spelling of the host, not its answers
	if err := NewGuard("http://127.0.0.1:1/mcp", false, true).CheckURL("http://"+name+":2/", "x"); err == nil {
		t.Errorf("http to a name that resolves to loopback allowed")
	}
}

// TestGuardEmbeddedIPv4: IPv6 forms that deliver to an IPv4 address
// (NAT64, 6to4, IPv4-compatible, SIIT, mapped) are classified by that
// address; local-use NAT64 and Teredo (embedding not readable) are
// refused; 0.0.0.0/8 is unroutable.
func TestGuardEmbeddedIPv4(t *testing.T) {
	cases := map[string]addrClass{
		"64:ff9b::a9fe:a9fe":                   classLinkLocal,
		"64:ff9b::169.254.169.254":             classLinkLocal,
		"64:ff9b::7f00:1":                      classLoopback,
		"64:ff9b::a00:1":                       classPrivate,
		"64:ff9b::6440:1":                      classPrivate, // 100.64.0.1
		"64:ff9b::808:808":                     classPublic,
		"64:ff9b:1::a9fe:a9fe":                 classForbidden,
		"64:ff9b:1:a9fe:a9:fe00::":             classForbidden,
		"2002:a9fe:a9fe::1":                    classLinkLocal,
		"2002:7f00:1::1":                       classLoopback,
		"2002:c0a8:101::":                      classPrivate,
		"2002:808:808::1":                      classPublic,
		"2001:0:4136:e378:8000:63bf:3fff:fdd2": classForbidden,
		"::a9fe:a9fe":                          classLinkLocal,
		"::127.0.0.1":                          classLoopback,
		"::ffff:0:a9fe:a9fe":                   classLinkLocal,
		"::ffff:169.254.169.254":               classLinkLocal,
		"::2":                                  classForbidden,
		"0.1.2.3":                              classForbidden,
		"::1":                                  classLoopback,
		"::":                                   classForbidden,
		"2606:4700::1111":                      classPublic,
		"fe80::1%lo":                           classLinkLocal,
	}
	pub := NewGuard("https://203.0.113.7/mcp", false, false)
	for a, want := range cases {
		ip := netip.MustParseAddr(a)
		if got := classify(ip); got != want {
			t.Errorf("%s: %v, want %v", a, got, want)
		}
		if want == classPublic {
			continue
		}
		if err := pub.CheckURL("https://"+netip.AddrPortFrom(ip, 443).String()+"/", "authorization server"); err == nil {
			t.Errorf("public server: https://[%s]/ allowed", a)
		}
		if err := pub.Control("tcp", netip.AddrPortFrom(ip, 443).String(), nil); err == nil {
			t.Errorf("public server: dial to %s allowed", a)
		}
	}
}

// TestRegistrationRefusesNonVSCHAR: a registered client_id (or secret)
// with a character outside %x20-7E is refused at registration time, so it
// never reaches the vault, status rows or logs.
func TestRegistrationRefusesNonVSCHAR(t *testing.T) {
	for _, id := range []string{"cid\n  issuer    https://accounts.google.com", "cid\r", "cid\x1b[2J", "cid\u202e", "cid\xff", "cid\t"} {
		for _, field := range []string{"client_id", "client_secret"} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				doc := map[string]any{"client_id": "ok", "client_secret": "ok"}
				doc[field] = id
				w.WriteHeader(201)
				json.NewEncoder(w).Encode(doc)
			}))
			_, _, err := testEngine(srv.URL).Register(context.Background(), &ServerMetadata{Issuer: srv.URL, RegistrationEndpoint: srv.URL + "/register"}, "http://127.0.0.1:1/cb", false)
			srv.Close()
			if err == nil || !strings.Contains(err.Error(), "VSCHAR") || strings.Contains(err.Error(), "issuer ") {
				t.Errorf("%s %q: %v", field, id, err)
			}
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, `{"client_id":"a-Z_0.9~ !x"}`)
	}))
	defer srv.Close()
	if c, _, err := testEngine(srv.URL).Register(context.Background(), &ServerMetadata{Issuer: srv.URL, RegistrationEndpoint: srv.URL + "/register"}, "http://127.0.0.1:1/cb", false); err != nil || c.ID != "a-Z_0.9~ !x" {
		t.Fatalf("VSCHAR client_id: %v %v", c, err)
	}
	_ = time.Second
}
