package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// issuer is a loopback OAuth issuer: an RFC 8414 metadata document and a
// JWKS with one ES256 key the gateway trusts, and a minter of access
// tokens (RFC 9068) for any subject. A second key, unpublished, signs the
// invalid tokens of the 401 path.
type issuer struct {
	url      string
	key, bad *ecdsa.PrivateKey
	srv      *http.Server
}

func startIssuer() (*issuer, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String(), key: key, bad: bad}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.url, "jwks_uri": is.url + "/jwks",
			"authorization_endpoint": is.url + "/authorize", "token_endpoint": is.url + "/token",
			"code_challenge_methods_supported": []string{"S256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "load1", Algorithm: "ES256", Use: "sig"}}})
	})
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go is.srv.Serve(ln)
	return is, nil
}

// token mints an ES256 access token for sub and aud, valid for ttl;
// jkt binds it to a DPoP key when not "". valid=false signs with the
// unpublished key.
func (is *issuer) token(sub, aud, jkt string, ttl time.Duration, valid bool) (string, error) {
	k := is.key
	if !valid {
		k = is.bad
	}
	now := time.Now()
	jti := make([]byte, 9)
	rand.Read(jti)
	claims := map[string]any{"iss": is.url, "sub": sub, "aud": aud, "client_id": "loadgen",
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(), "scope": "mcp:read",
		"jti": base64.RawURLEncoding.EncodeToString(jti)}
	if jkt != "" {
		claims["cnf"] = map[string]string{"jkt": jkt}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "load1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return "", err
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// upstream is a cheap Streamable HTTP MCP server (both eras): initialize
// gives a session id, calls answer at once, GET holds an idle SSE stream
// after one event, DELETE ends the session. It keeps no per-session state,
// so its own cost does not move with the gateway's.
type upstream struct {
	sessions atomic.Int64
	streams  atomic.Int64 // open GET streams
}

// serveUpstream is the -upstream-server mode: the upstream in a process
// of its own, so that its descriptors (one per stream) do not count
// against the generator's. It prints its URL, then serves; GET /count
// answers the number of open streams.
func serveUpstream() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	u := &upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, u.streams.Load()) })
	mux.HandleFunc("/mcp", u.serve)
	fmt.Println("http://" + ln.Addr().String() + "/mcp")
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }() // the parent's end closes stdin
	srv.Serve(ln)
}

// upstreamProc is the upstream child.
type upstreamProc struct {
	url string
	cmd *exec.Cmd
}

func startUpstream(self string) (*upstreamProc, error) {
	cmd := exec.Command(self, "-upstream-server")
	stdin, _ := cmd.StdinPipe()
	_ = stdin // held open for the child's life; closed when the generator exits
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("upstream child: %w", err)
	}
	return &upstreamProc{url: strings.TrimSpace(line), cmd: cmd}, nil
}

// openStreams asks the upstream how many GET streams it holds.
func (u *upstreamProc) openStreams() string {
	resp, err := metricsClient.Get(strings.TrimSuffix(u.url, "/mcp") + "/count")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		u.streams.Add(1)
		defer u.streams.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	case http.MethodDelete:
		w.WriteHeader(http.StatusOK)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	w.Header().Set("Content-Type", "application/json")
	out, sid := answer(body, func() string { return fmt.Sprintf("up-%d", u.sessions.Add(1)) })
	if out == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if sid != "" {
		w.Header().Set("Mcp-Session-Id", sid)
	}
	w.Write(out)
}

const toolsList = `{"tools":[{"name":"echo","description":"echoes","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}]}`

// answer is the MCP server's reply to one JSON-RPC message (nil for a
// notification); newSession names the session an initialize opens.
func answer(body []byte, newSession func() string) (out []byte, sid string) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &m) != nil || m.ID == nil {
		return nil, ""
	}
	var result string
	switch m.Method {
	case "initialize":
		sid = newSession()
		v := m.Params.ProtocolVersion
		if v == "" {
			v = "2025-11-25"
		}
		result = `{"protocolVersion":"` + v + `","capabilities":{"tools":{}},"serverInfo":{"name":"loadgen-upstream","version":"1"}}`
	case "tools/list":
		result = toolsList
	case "tools/call":
		result = `{"content":[{"type":"text","text":"ok"}]}`
	default:
		result = `{}`
	}
	return []byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":` + result + `}`), sid
}

// stdioServer is the same MCP server over stdio (newline-delimited JSON):
// what the gateway runs once per stdio session.
func stdioServer() {
	r := bufio.NewReaderSize(os.Stdin, 64*1024)
	w := bufio.NewWriter(os.Stdout)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if out, _ := answer(line, func() string { return "" }); out != nil {
				w.Write(out)
				w.WriteByte('\n')
				w.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// dpopKey is the generator's DPoP key (one for all DPoP subjects).
type dpopKey struct {
	key *ecdsa.PrivateKey
	jkt string
}

func newDPoPKey() (*dpopKey, error) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, err := dpop.Thumbprint(k.Public())
	return &dpopKey{k, jkt}, err
}

func (d *dpopKey) proof(method, htu, token string) (string, error) {
	return dpop.NewProof(d.key, "ES256", method, htu, dpop.ProofOptions{AccessToken: token})
}

// raiseFileLimit lifts RLIMIT_NOFILE (soft, and hard when allowed) to
// want, for this process and the gateway it starts: 10,000 streams are
// 20,000 descriptors in the gateway and as many here.
func raiseFileLimit(want uint64) uint64 {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	if l.Cur >= want {
		return l.Cur
	}
	n := syscall.Rlimit{Cur: want, Max: max(want, l.Max)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n) != nil {
		n = syscall.Rlimit{Cur: l.Max, Max: l.Max} // not privileged: the hard limit is the ceiling
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n)
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// gateway is a running `mcpgate serve` started by the generator.
type gateway struct {
	cmd        *exec.Cmd
	pid        int
	url        string // http://host:port
	metricsURL string
	dir        string
}

// gatewayConfig is the generated configuration: the limits the scenario
// needs, raised above the defaults where the scenario says so.
type gatewayConfig struct {
	Listen, Metrics, IssuerURL, UpstreamURL, StdioCommand string
	StreamsPerSubject, HTTPSessionsPerSubject             int
	StdioSessions, StdioPerSubject                        int
	MaxConnections                                        int
	Audit                                                 bool
	// Replica (the hop scenario): every replica's public_url is the first
	// one's, each advertises its own listen address, all share the key.
	PublicURL, AdvertiseURL, ReplicaSecretFile string
	AllowedHosts                               []string
}

func (c gatewayConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\n", c.Listen)
	if c.PublicURL != "" {
		fmt.Fprintf(&b, "public_url: %s\nallowed_hosts: [%s]\n", c.PublicURL, strings.Join(c.AllowedHosts, ", "))
	}
	if c.AdvertiseURL != "" {
		fmt.Fprintf(&b, "state:\n  replica:\n    advertise_url: %s\n    secret_file: %s\n", c.AdvertiseURL, c.ReplicaSecretFile)
	}
	fmt.Fprintf(&b, "issuers:\n  - issuer: %s\n    jwks_uri: %s/jwks\n", c.IssuerURL, c.IssuerURL)
	fmt.Fprintf(&b, "upstreams:\n  - path: /mcp\n    url: %s\n    scopes_supported: [mcp:read]\n", c.UpstreamURL)
	fmt.Fprintf(&b, "    policy: {default: allow, required_scopes: [mcp:read]}\n")
	fmt.Fprintf(&b, "  - path: /stdio/mcp\n    command: [%q, \"-stdio-server\"]\n    max_sessions: %d\n", c.StdioCommand, c.StdioSessions)
	fmt.Fprintf(&b, "    scopes_supported: [mcp:read]\n")
	// A limit no scenario reaches (one subject at c=1 sends thousands per
	// second): a refusal would be measured instead of a proxied request.
	// It still costs what it costs (a shared-bucket borrow per batch of 16).
	fmt.Fprintf(&b, "limits:\n  requests_per_second: 50000\n  burst: 100000\n")
	fmt.Fprintf(&b, "  max_streams_per_subject: %d\n  max_http_sessions_per_subject: %d\n  max_sessions_per_subject: %d\n",
		c.StreamsPerSubject, c.HTTPSessionsPerSubject, c.StdioPerSubject)
	fmt.Fprintf(&b, "  max_connections: %d\n  max_connections_per_address: -1\n", c.MaxConnections)
	fmt.Fprintf(&b, "metrics:\n  listen: %s\nlog:\n  level: warn\n", c.Metrics)
	if c.Audit {
		b.WriteString("audit:\n  file: audit.log\n")
	} else {
		b.WriteString("audit:\n  disabled: true\n")
	}
	return b.String()
}

// startGateway writes cfg to a private directory and runs bin serve on it
// (with extra arguments, e.g. --redis-url), then waits for /readyz.
func startGateway(bin string, cfg gatewayConfig, extra []string) (*gateway, error) {
	dir, err := os.MkdirTemp("", "loadgen")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml()), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--config", path}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	g := &gateway{cmd: cmd, pid: cmd.Process.Pid, url: "http://" + cfg.Listen, metricsURL: "http://" + cfg.Metrics + "/metrics", dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := metricsClient.Get(g.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.stop()
	log, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	return nil, fmt.Errorf("gateway not ready in 20 s; its log:\n%s", log)
}

func (g *gateway) stop() {
	g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		g.cmd.Process.Kill()
		<-done
	}
}
