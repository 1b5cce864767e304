package oauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Redirect configures the loopback redirect listener.
type Redirect struct {
	Host string // default 127.0.0.1 ("localhost" when an IdP insists)
	Port int    // 0: ephemeral
	Path string // default /callback
}

// Interaction says how the user reaches the authorization URL.
type Interaction struct {
	// Browser is the command to open URLs with (the URL is appended as one
	// argument; no shell). Empty: $BROWSER, then the OS opener.
	Browser []string
	// NoBrowser only prints the URL.
	NoBrowser bool
	// Paste, when set, is read for a pasted redirect URL (headless use).
	Paste io.Reader
	// Out receives the instructions (stderr).
	Out io.Writer
	// Timeout bounds the wait for the user (default 5 minutes).
	Timeout time.Duration
	// Getenv reads $BROWSER (os.Getenv when nil).
	Getenv func(string) string
	// Open, when set, replaces launching a browser (the broker redirects
	// the user's own browser request instead).
	Open func(authURL string) error
}

// AuthRequest is one authorization code flow.
type AuthRequest struct {
	Discovery  *Discovery
	Client     *Client
	Scopes     []string
	NoResource bool     // --no-resource (IdPs that reject RFC 8707)
	DPoP       *DPoPKey // nil: bearer tokens
	NoPAR      bool     // do not use PAR even when offered (unless required)
	// Extra are further authorization request parameters (IdP quirks);
	// they never replace one the flow sets.
	Extra url.Values
}

// Listener is a bound loopback redirect endpoint, or an external one
// served by another HTTP server (the broker's /oauth/callback).
type Listener struct {
	ln   net.Listener
	URI  string
	path string

	mu      sync.Mutex   // guards current
	current http.Handler // the flow waiting for its callback (external)
}

// ExternalListener is a redirect endpoint at uri served by the caller's
// own HTTP server, which passes the callback requests to ServeHTTP.
func ExternalListener(uri string) (*Listener, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !IsLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("redirect URI %q must be http on a loopback host", uri)
	}
	return &Listener{URI: uri, path: u.Path}, nil
}

// ServeHTTP hands a callback to the flow waiting for it (external
// listeners); without one it answers 404.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	h := l.current
	l.mu.Unlock()
	if h == nil {
		page(w, http.StatusNotFound, "No sign-in in progress", "Start the login again.")
		return
	}
	h.ServeHTTP(w, r)
}

// Listen binds the redirect listener (before registration, which needs
// the redirect URI).
func Listen(r Redirect) (*Listener, error) {
	host := r.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if !IsLoopbackHost(host) {
		return nil, fmt.Errorf("redirect host %q is not a loopback address", host)
	}
	path := r.Path
	if path == "" {
		path = "/callback"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	bind := host
	if strings.EqualFold(host, "localhost") {
		bind = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(r.Port)))
	if err != nil {
		return nil, fmt.Errorf("redirect listener on %s:%d: %w (choose another --redirect-port)", host, r.Port, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return &Listener{ln: ln, path: path, URI: "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path}, nil
}

// Close releases the port (a no-op for external listeners).
func (l *Listener) Close() error {
	if l.ln == nil {
		return nil
	}
	return l.ln.Close()
}

// callbackResult is what the redirect carried.
type callbackResult struct {
	query url.Values
	err   error
}

// AuthorizationURL builds the front-channel URL (pushing the request first
// when PAR is used). It returns the URL and the values to check on the
// callback.
func (e *Engine) authorizationURL(ctx context.Context, ar *AuthRequest, redirectURI, state, challenge string) (string, error) {
	as := ar.Discovery.AS
	if err := e.Guard.CheckURL(as.AuthorizationEndpoint, "authorization endpoint"); err != nil {
		return "", err
	}
	p := url.Values{
		"response_type":         {"code"},
		"client_id":             {ar.Client.ID},
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	if len(ar.Scopes) > 0 {
		p.Set("scope", strings.Join(ar.Scopes, " "))
	}
	if !ar.NoResource {
		p.Set("resource", ar.Discovery.Resource)
	}
	if ar.DPoP != nil {
		p.Set("dpop_jkt", ar.DPoP.Thumbprint())
	}
	for k, v := range ar.Extra {
		if _, set := p[k]; !set {
			p[k] = v
		}
	}
	usePAR := as.PAREndpoint != "" && (!ar.NoPAR || as.RequirePAR)
	if as.RequirePAR && as.PAREndpoint == "" {
		return "", errors.New("the authorization server requires pushed authorization requests but names no pushed_authorization_request_endpoint")
	}
	if usePAR {
		var par struct {
			RequestURI string `json:"request_uri"`
			ExpiresIn  int    `json:"expires_in"`
		}
		if _, err := e.post(ctx, as.PAREndpoint, "pushed authorization request endpoint", as, ar.Client, p, ar.DPoP, &par); err != nil {
			return "", err
		}
		if par.RequestURI == "" {
			return "", &TokenError{Endpoint: "pushed authorization request endpoint", Status: 201, Err: errors.New("the answer has no request_uri")}
		}
		p = url.Values{"client_id": {ar.Client.ID}, "request_uri": {par.RequestURI}}
	}
	u, err := url.Parse(as.AuthorizationEndpoint)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, v := range p {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// AuthorizationCode runs the authorization code flow with PKCE on an
// already bound listener and returns the token.
func (e *Engine) AuthorizationCode(ctx context.Context, ar *AuthRequest, l *Listener, in Interaction) (*Token, error) {
	as := ar.Discovery.AS
	if !as.Legacy && !slices.Contains(as.CodeChallengeMethods, "S256") {
		return nil, fmt.Errorf("the authorization server %s does not advertise PKCE S256 (code_challenge_methods_supported=%v); the MCP specification forbids proceeding", as.Issuer, as.CodeChallengeMethods)
	}
	verifier, challenge := pkce()
	state := randomString(32)
	authURL, err := e.authorizationURL(ctx, ar, l.URI, state, challenge)
	if err != nil {
		return nil, err
	}
	results := make(chan callbackResult, 2)
	handler := callbackHandler(l.path, state, as, results)
	if l.ln != nil {
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l.ln) }()
		defer srv.Close()
	} else {
		l.mu.Lock()
		l.current = handler
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.current = nil
			l.mu.Unlock()
		}()
	}
	if in.Paste != nil {
		go readPasted(in.Paste, l.URI, state, as, results)
	}
	if err := e.open(authURL, in); err != nil {
		fmt.Fprintf(in.out(), "mcpgate: could not open a browser (%v)\n", err)
	}
	timeout := in.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(timeout):
		return nil, fmt.Errorf("no authorization response within %s; run the command again, or paste the redirect URL", timeout)
	}
	if res.err != nil {
		return nil, res.err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {res.query.Get("code")},
		"redirect_uri":  {l.URI},
		"code_verifier": {verifier},
	}
	if !ar.NoResource {
		form.Set("resource", ar.Discovery.Resource)
	}
	return e.TokenRequest(ctx, as, ar.Client, form, ar.DPoP, ar.Scopes)
}

func (in Interaction) out() io.Writer {
	if in.Out == nil {
		return io.Discard
	}
	return in.Out
}

// checkCallback validates a redirect's parameters: state (constant time),
// RFC 9207 iss, then error or code.
func checkCallback(q url.Values, state string, as *ServerMetadata) error {
	if !equalConstantTime(q.Get("state"), state) {
		return errors.New("the authorization response has a missing or wrong state; ignoring it (possible CSRF)")
	}
	if err := CheckIssuer(q, as); err != nil {
		return err
	}
	if code := q.Get("error"); code != "" {
		msg := "the authorization server refused: " + code
		if d := q.Get("error_description"); d != "" {
			msg += " (" + d + ")"
		}
		return errors.New(msg)
	}
	if q.Get("code") == "" {
		return errors.New("the authorization response has no code")
	}
	return nil
}

// CheckIssuer applies RFC 9207 as the MCP 2026-07-28 specification
// requires: an advertised iss parameter must be present and identical
// (byte for byte) to the metadata issuer; an unadvertised one that is
// present is compared anyway.
func CheckIssuer(q url.Values, as *ServerMetadata) error {
	iss, present := q["iss"]
	switch {
	case present && (len(iss) != 1 || iss[0] != as.Issuer):
		return fmt.Errorf("the authorization response comes from issuer %q, not %q: refusing it (mix-up attack protection, RFC 9207)", strings.Join(iss, ","), as.Issuer)
	case !present && as.ISSParameterSupported:
		return fmt.Errorf("the authorization server %s advertises RFC 9207 but its response has no iss parameter: refusing it", as.Issuer)
	}
	return nil
}

var pageTemplate = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>%s</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;background:#f5f6f8;color:#1d2230}main{background:#fff;padding:2rem 2.5rem;border-radius:12px;box-shadow:0 2px 12px #0002;max-width:32rem}h1{font-size:1.3rem;margin:0 0 .5rem}</style></head>
<body><main><h1>%s</h1><p>%s</p></main></body></html>`

func page(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, pageTemplate, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
}

func callbackHandler(path, state string, as *ServerMetadata, results chan<- callbackResult) http.Handler {
	done := make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		select {
		case <-done:
			page(w, http.StatusGone, "Already used", "This sign-in link was already used. You can close this tab.")
			return
		default:
		}
		q := r.URL.Query()
		err := checkCallback(q, state, as)
		if err != nil && strings.Contains(err.Error(), "state") {
			// a stray or forged request does not end the flow
			page(w, http.StatusBadRequest, "Sign-in failed", err.Error())
			return
		}
		close(done)
		results <- callbackResult{query: q, err: err}
		if err != nil {
			page(w, http.StatusBadRequest, "Sign-in failed", err.Error()+" You can close this tab and return to the terminal.")
			return
		}
		page(w, http.StatusOK, "Signed in", "mcpgate received the authorization. You can close this tab and return to the terminal.")
	})
}

// readPasted accepts the redirect URL pasted by a user on another machine.
func readPasted(r io.Reader, redirectURI, state string, as *ServerMetadata, results chan<- callbackResult) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		u, err := url.Parse(line)
		if err != nil || !strings.HasPrefix(line, strings.SplitN(redirectURI, "?", 2)[0]) && u.RawQuery == "" {
			continue
		}
		q := u.Query()
		if err := checkCallback(q, state, as); err != nil && strings.Contains(err.Error(), "state") {
			continue
		} else {
			results <- callbackResult{query: q, err: err}
			return
		}
	}
}

// open shows the authorization URL: printed always (stderr), opened with
// the configured browser command, $BROWSER or the OS opener — never
// through a shell, and only for http(s) URLs.
func (e *Engine) open(rawURL string, in Interaction) error {
	if err := e.Guard.CheckURL(rawURL, "authorization URL"); err != nil {
		return err
	}
	if in.Open != nil {
		return in.Open(rawURL)
	}
	fmt.Fprintf(in.out(), "mcpgate: to authorize, open this URL in a browser:\n\n  %s\n\n", rawURL)
	if in.NoBrowser {
		return nil
	}
	argv := in.Browser
	getenv := in.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if len(argv) == 0 {
		if b := getenv("BROWSER"); b != "" {
			argv = strings.Fields(strings.SplitN(b, ":", 2)[0])
		}
	}
	if len(argv) == 0 {
		switch runtime.GOOS {
		case "darwin":
			argv = []string{"open"}
		case "windows":
			argv = []string{"rundll32", "url.dll,FileProtocolHandler"}
		default:
			argv = []string{"xdg-open"}
		}
	}
	cmd := exec.Command(argv[0], append(argv[1:], rawURL)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
