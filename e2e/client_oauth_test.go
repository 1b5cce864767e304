//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// cli runs mcpgate with a private config dir; it returns stdout, stderr
// and the exit code.
type cli struct {
	t      *testing.T
	bin    string
	env    []string
	dir    string
	browse string
}

func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	return &cli{t: t, bin: Mcpgate(t), dir: dir,
		env:    []string{"MCPGATE_CONFIG_DIR=" + dir, "BROWSER_LOG=" + filepath.Join(dir, "browser.log")},
		browse: Node22(t) + " " + filepath.Join(Dir(t), "fixtures/client/browser.mjs")}
}

func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("mcpgate %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

type statusEntry struct {
	Server, Issuer, Subject, TokenType string   `json:"-"`
	S                                  string   `json:"server"`
	I                                  string   `json:"issuer"`
	Sub                                string   `json:"subject"`
	TT                                 string   `json:"token_type"`
	ClientID                           string   `json:"client_id"`
	Scopes                             []string `json:"scopes"`
	Refreshable                        bool     `json:"refreshable"`
	Store                              string   `json:"store"`
}

func (c *cli) status() []statusEntry {
	c.t.Helper()
	var st []statusEntry
	out := c.must("status", "--json", "--store", "file")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// protectEverything starts server-everything (Streamable HTTP) behind a
// gateway trusting op, with scope mcp:read and extra gateway args.
func protectEverything(t *testing.T, op *OP, args ...string) (*OP, *Gateway, string) {
	up := startEverythingHTTP(t, "streamableHttp")
	gw := StartGateway(t, nil, append([]string{"--issuer", op.Issuer, "--upstream", up, "--scope", "mcp:read"}, args...)...)
	gw.WaitReady(t)
	return op, gw, gw.Endpoint("/mcp")
}

// startGatewayConfig runs mcpgate serve with a YAML config (format
// arguments applied; the listen address is added) and waits until ready.
func startGatewayConfig(t *testing.T, format string, args ...any) *Gateway {
	port := FreePort(t)
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\n", port) + fmt.Sprintf(format, args...)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	gp, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: gp}
	gw.WaitReady(t)
	return gw
}

// TestClientLoginCallLogout: against the certified OP (plain profile, DCR)
// and the gateway in front of server-everything, mcpgate login completes
// the browser flow (driven headlessly over HTTP through --browser),
// stores a DPoP-bound refreshable credential encrypted on disk, call uses
// it without a new login, and logout revokes it at the OP.
func TestClientLoginCallLogout(t *testing.T) {
	op, gw, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)

	out := c.must("login", "--store", "file", "--browser", c.browse, mcpURL)
	for _, want := range []string{"alice", op.Issuer, "DPoP, refreshable", "mcp:read"} {
		if !strings.Contains(out, want) {
			t.Errorf("login output lacks %q:\n%s", want, out)
		}
	}
	st := c.status()
	if len(st) != 1 || st[0].S != mcpURL || st[0].I != op.Issuer || st[0].TT != "DPoP" || !st[0].Refreshable || st[0].Sub != "alice" {
		t.Fatalf("status: %+v", st)
	}
	// the vault: 0700 directory, 0600 files, no token in clear
	entries, _ := filepath.Glob(filepath.Join(c.dir, "entries", "*.json"))
	if len(entries) < 3 {
		t.Fatalf("vault entries: %v", entries)
	}
	rt := storedRefreshToken(t, c.dir)
	for _, f := range entries {
		fi, _ := os.Stat(f)
		b, _ := os.ReadFile(f)
		// the refresh token and the issuer URL (":" never occurs in the
		// base64 ciphertext) must not appear in clear
		if fi.Mode().Perm() != 0o600 || bytes.Contains(b, []byte(rt)) || bytes.Contains(b, []byte(op.Issuer)) {
			t.Errorf("%s: mode %v or plaintext content", f, fi.Mode().Perm())
		}
	}
	// call with the stored credential only: no browser this time
	os.Remove(filepath.Join(c.dir, "browser.log"))
	out = c.must("call", "--store", "file", "--no-login", "--tool", "echo", "--args", `{"message":"through the gateway"}`, mcpURL)
	if !strings.Contains(out, "through the gateway") {
		t.Fatalf("call output: %s", out)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "browser.log")); err == nil {
		t.Fatal("call opened a browser although a credential was stored")
	}
	if !introspectActive(t, op, rt) {
		t.Fatal("the stored refresh token is not active at the OP before logout")
	}
	out = c.must("logout", "--store", "file", mcpURL)
	if !strings.Contains(out, "revoked") || introspectActive(t, op, rt) {
		t.Fatalf("logout did not revoke the refresh token at the OP: %s", out)
	}
	if st := c.status(); len(st) != 0 {
		t.Fatalf("status after logout: %+v", st)
	}
	_, errs, code := c.run("call", "--store", "file", "--no-login", mcpURL)
	if code == 0 || !strings.Contains(errs, "mcpgate login") {
		t.Fatalf("call after logout: exit %d, %s", code, errs)
	}
	if strings.Contains(gw.Proc.Output(), "eyJ") {
		t.Fatal("the gateway logged a token")
	}
}

// storedRefreshToken reads the refresh token from the file vault in dir.
func storedRefreshToken(t *testing.T, dir string) string {
	t.Helper()
	st, err := vault.OpenFile(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := st.List("token|")
	if len(keys) != 1 {
		t.Fatalf("vault token entries: %v", keys)
	}
	raw, _ := st.Get(keys[0])
	var rec oauth.Record
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Token.RefreshToken == "" {
		t.Fatalf("stored record: %v", err)
	}
	return rec.Token.RefreshToken
}

// introspectActive asks the OP (as the gateway-rs client) whether a token
// is active (RFC 7662).
func introspectActive(t *testing.T, op *OP, token string) bool {
	t.Helper()
	req, _ := http.NewRequest("POST", op.Issuer+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gateway-rs", "rs-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Active bool `json:"active"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("introspection: %d %s", resp.StatusCode, b)
	}
	return r.Active
}

// TestClientRefreshOnceAcrossProcesses: with access tokens that live 5 s
// and rotating refresh tokens, 8 mcpgate processes started at once on the
// same expired credential all succeed, and the OP sees exactly one refresh.
func TestClientRefreshOnceAcrossProcesses(t *testing.T) {
	op, _, mcpURL := protectEverything(t, StartOP(t, "short"))
	c := newCLI(t)
	c.must("login", "--store", "file", "--browser", c.browse, mcpURL)
	time.Sleep(6 * time.Second) // the access token expires
	before := strings.Count(op.Proc.Output(), "GRANT refresh_token")
	var wg sync.WaitGroup
	errs := make([]string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, se, code := c.run("call", "--store", "file", "--no-login", "--tool", "echo", "--args", `{"message":"p`+string(rune('0'+i))+`"}`, mcpURL)
			if code != 0 || !strings.Contains(out, "p"+string(rune('0'+i))) {
				errs[i] = se + out
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("process %d failed: %s", i, e)
		}
	}
	refreshes := strings.Count(op.Proc.Output(), "GRANT refresh_token") - before
	if refreshes != 1 {
		t.Fatalf("%d refreshes for 8 processes, want exactly 1\n%s", refreshes, op.Proc.Output())
	}
	if strings.Contains(op.Proc.Output(), "GRANT_ERROR") {
		t.Fatalf("the OP saw failed grants:\n%s", op.Proc.Output())
	}
}

// TestClientFAPI: the OP in its FAPI 2.0-style profile (PAR required,
// DPoP-bound tokens with server nonces) and a pre-registered client
// authenticating with private_key_jwt; the gateway requires DPoP with its
// own nonces (use_dpop_nonce at the resource server too). mcpgate login
// and call complete against both, and doctor reports what it found.
func TestClientFAPI(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256", Use: "sig", KeyID: "k1"})
	op := StartOP(t, "fapi", "OP_PKJWT_JWK="+string(jwk))
	gw := startGatewayConfig(t, `issuers:
  - issuer: %s
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
    dpop: required
    dpop_nonce: true
`, op.Issuer, startEverythingHTTP(t, "streamableHttp"))
	mcpURL := gw.Endpoint("/mcp")
	c := newCLI(t)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(c.dir, "client.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	out := c.must("login", "--store", "file", "--browser", c.browse, "--client-id", "mcp-pkjwt", "--client-key-file", keyFile, "--client-key-id", "k1", mcpURL)
	if !strings.Contains(out, "DPoP") || !strings.Contains(out, "private_key_jwt") {
		t.Fatalf("login: %s", out)
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "browser.log"))
	if !strings.Contains(string(log), "request_uri=") || strings.Contains(string(log), "code_challenge=") {
		t.Fatalf("the authorization request did not go through PAR:\n%s", log)
	}
	out = c.must("call", "--store", "file", "--no-login", "--client-id", "mcp-pkjwt", "--client-key-file", keyFile, "--tool", "echo", "--args", `{"message":"fapi"}`, mcpURL)
	if !strings.Contains(out, "fapi") {
		t.Fatalf("call: %s", out)
	}
	out = c.must("doctor", mcpURL)
	for _, want := range []string{`PAR \(RFC 9126\)\s+required`, `DPoP \(RFC 9449\)\s+ES256`, `PKCE S256\s+yes`,
		`iss parameter \(RFC 9207\)\s+yes`, `resource\s+` + regexp.QuoteMeta(mcpURL), `No problems found`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("doctor output lacks %s:\n%s", want, out)
		}
	}
}

// TestClientStepUp: the gateway's policy puts the echo tool behind
// mcp:admin. Logged in with mcp:read only, mcpgate call gets 403
// insufficient_scope, re-authorizes once with the union of the scopes, and
// the call succeeds with a token that carries both.
func TestClientStepUp(t *testing.T) {
	op := StartOP(t, "plain")
	gw := startGatewayConfig(t, `issuers:
  - issuer: %s
upstreams:
  - url: %s
    scopes_supported: [mcp:read, mcp:admin]
    policy:
      tools: [{match: "echo", scopes: [mcp:admin]}]
`, op.Issuer, startEverythingHTTP(t, "streamableHttp"))
	mcpURL := gw.Endpoint("/mcp")
	c := newCLI(t)
	c.must("login", "--store", "file", "--browser", c.browse, "--scope", "mcp:read", mcpURL)
	if st := c.status(); len(st) != 1 || slices.Contains(st[0].Scopes, "mcp:admin") {
		t.Fatalf("first login: %+v", st)
	}
	out := c.must("call", "--store", "file", "--browser", c.browse, "--scope", "mcp:read", "--tool", "echo", "--args", `{"message":"stepped up"}`, mcpURL)
	if !strings.Contains(out, "stepped up") {
		t.Fatalf("call: %s", out)
	}
	st := c.status()
	if len(st) != 1 || !slices.Contains(st[0].Scopes, "mcp:admin") || !slices.Contains(st[0].Scopes, "mcp:read") {
		t.Fatalf("after step-up: %+v", st)
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "browser.log"))
	if n := strings.Count(string(log), "/auth?"); n != 2 {
		t.Fatalf("%d authorization requests, want 2 (login + one step-up):\n%s", n, log)
	}
}

// TestClientKeyringSecretService: the keyring backend against a real
// Secret Service (gnome-keyring in a private D-Bus session, Debian
// packages): login stores there and nothing lands in the file vault;
// a new D-Bus session (the daemon restarted) still finds the credential,
// call uses it, logout removes it.
func TestClientKeyringSecretService(t *testing.T) {
	for _, bin := range []string{"dbus-run-session", "gnome-keyring-daemon"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s missing: scripts/deps.sh installs the dbus and gnome-keyring packages", bin)
		}
	}
	_, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	home := t.TempDir()
	script := filepath.Join(home, "unlock.sh")
	os.WriteFile(script, []byte("set -e\neval \"$(printf 'pw' | gnome-keyring-daemon --unlock --components=secrets)\" >/dev/null\nexport GNOME_KEYRING_CONTROL\nexec \"$@\"\n"), 0o600)
	session := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dbus-run-session", append([]string{"--", "sh", script, c.bin}, args...)...)
		cmd.Env = append(os.Environ(), append(c.env, "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_RUNTIME_DIR="+home)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("mcpgate %v in a D-Bus session: %v\n%s\n%s", args, err, out.String(), errb.String())
		}
		return out.String()
	}
	out := session("login", "--store", "keyring", "--browser", c.browse, mcpURL)
	if !regexp.MustCompile(`(?m)^\s+store\s+keyring$`).MatchString(out) {
		t.Fatalf("login: %s", out)
	}
	if ents, _ := filepath.Glob(filepath.Join(c.dir, "entries", "*")); len(ents) != 0 {
		t.Fatalf("the keyring store wrote file entries: %v", ents)
	}
	var st []statusEntry
	if err := json.Unmarshal([]byte(session("status", "--json", "--store", "keyring")), &st); err != nil || len(st) != 1 || st[0].Store != "keyring" || st[0].S != mcpURL {
		t.Fatalf("status from a new D-Bus session: %+v %v", st, err)
	}
	if out := session("call", "--store", "keyring", "--no-login", "--tool", "echo", "--args", `{"message":"from the keyring"}`, mcpURL); !strings.Contains(out, "from the keyring") {
		t.Fatalf("call: %s", out)
	}
	session("logout", "--store", "keyring", mcpURL)
	if out := session("status", "--store", "keyring"); !strings.Contains(out, "No stored credentials") {
		t.Fatalf("status after logout: %s", out)
	}
}

// TestClientHeadlessPaste: over SSH there is no browser on the machine
// running mcpgate. login --no-browser prints the URL; the person logs in
// elsewhere and pastes the redirect URL (which never reached the
// listener) into mcpgate's stdin.
func TestClientHeadlessPaste(t *testing.T) {
	_, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	l, authURL := c.startLogin(t, authorizationURL, "--store", "file", "--no-browser", mcpURL)
	out, err := exec.Command(Node22(t), "fixtures/client/paste.mjs", authURL).Output()
	if err != nil {
		t.Fatalf("paste.mjs: %v", err)
	}
	redirect := strings.TrimSpace(string(out))
	if !strings.Contains(redirect, "code=") {
		t.Fatalf("redirect URL: %s", redirect)
	}
	// noise first: a stray line and a URL with a wrong state are ignored
	fmt.Fprintf(l.stdin, "not a url\nhttp://127.0.0.1:1/callback?code=x&state=forged\n%s\n", redirect)
	if out := l.wait(30 * time.Second); !strings.Contains(out, "Logged in") {
		t.Fatalf("login with a pasted redirect:\n%s", out)
	}
}

// TestClientDeviceGrant: login --device (RFC 8628) with the OP's device
// flow: mcpgate shows the verification URL and code, a person completes
// it on another device (the headless browser walks the OP's confirmation,
// login and consent pages), mcpgate's polling gets the token, and call
// works with it.
func TestClientDeviceGrant(t *testing.T) {
	op, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	l, complete := c.startLogin(t, func(line string) (string, bool) {
		_, u, ok := strings.Cut(line, "or open ")
		return strings.TrimSpace(u), ok
	}, "--store", "file", "--device", "--client-id", "mcp-device", mcpURL)
	if !strings.HasPrefix(complete, op.Issuer) || !strings.Contains(complete, "user_code=") {
		t.Fatalf("no verification_uri_complete on stderr: %q", complete)
	}
	if out, err := exec.Command(Node22(t), "fixtures/client/browser.mjs", complete).CombinedOutput(); err != nil {
		t.Fatalf("completing the device flow: %v %s", err, out)
	}
	if out := l.wait(40 * time.Second); !strings.Contains(out, "alice") {
		t.Fatalf("login --device:\n%s", out)
	}
	if !strings.Contains(op.Proc.Output(), "GRANT urn:ietf:params:oauth:grant-type:device_code mcp-device") {
		t.Fatalf("the OP saw no device_code grant:\n%s", op.Proc.Output())
	}
	if out := c.must("call", "--store", "file", "--no-login", "--client-id", "mcp-device", "--tool", "echo", "--args", `{"message":"device"}`, mcpURL); !strings.Contains(out, "device") {
		t.Fatalf("call: %s", out)
	}
}

// loginProc is a running `mcpgate login` whose stderr instructions the
// test reads (headless, device and browser tests).
type loginProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	done   chan error
}

// startLogin runs mcpgate login with args and returns it with the first
// stderr line for which pick returns a value (the authorization URL, the
// device verification URL…).
func (c *cli) startLogin(t *testing.T, pick func(line string) (string, bool), args ...string) (*loginProc, string) {
	t.Helper()
	l := &loginProc{t: t, done: make(chan error, 1)}
	l.cmd = exec.Command(c.bin, append([]string{"login"}, args...)...)
	l.cmd.Env = append(os.Environ(), c.env...)
	l.stdin, _ = l.cmd.StdinPipe()
	stderr, _ := l.cmd.StderrPipe()
	l.cmd.Stdout = &l.stdout
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.cmd.Process.Kill() })
	found := make(chan string, 1)
	var seen strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if v, ok := pick(sc.Text()); ok && !sent {
				found <- v
				sent = true
			}
		}
		l.done <- l.cmd.Wait()
	}()
	select {
	case v := <-found:
		return l, v
	case <-time.After(30 * time.Second):
		t.Fatalf("mcpgate login printed nothing usable:\n%s", seen.String())
		return nil, ""
	}
}

// wait returns stdout after a successful exit within d.
func (l *loginProc) wait(d time.Duration) string {
	l.t.Helper()
	select {
	case err := <-l.done:
		if err != nil {
			l.t.Fatalf("mcpgate login: %v\n%s", err, l.stdout.String())
		}
	case <-time.After(d):
		l.t.Fatalf("mcpgate login did not finish within %s", d)
	}
	return l.stdout.String()
}

// authorizationURL picks the printed authorization URL.
func authorizationURL(line string) (string, bool) {
	l := strings.TrimSpace(line)
	return l, strings.HasPrefix(l, "http") && strings.Contains(l, "auth")
}
