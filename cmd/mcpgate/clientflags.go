package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	profile, store                       string
	clientID, clientSecretFile           string
	clientKeyFile, clientKeyID           string
	clientMetadataURL, authMethod        string
	scopes                               multiFlag
	issuer                               string
	noResource, noPAR                    bool
	dpopMode                             string
	redirectHost, redirectPath           string
	redirectPort                         int
	browser                              string
	noBrowser, device, clientCredentials bool
	headers                              multiFlag
	headerFile                           string
	caFile                               string
	allowHTTP, allowPrivate              bool
	timeout                              time.Duration
	protocolVersion                      string
	authzEndpoint, tokenEndpoint         string
	registrationEndpoint                 string
	logLevel                             string
	force                                bool            // login: authorize even with a stored token
	callback                             *oauth.Listener // broker: redirects arrive at its own port
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// newClientFlagSet is the flag set of a client command with the shared
// flags registered.
func newClientFlagSet(name string, e *env) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f := &clientFlags{}
	f.register(fs)
	return fs, f
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "default", "credential profile `name` (several identities for one server)")
	fs.StringVar(&f.store, "store", "", "credential store: auto, keyring, file or memory (default $MCPGATE_STORE, else auto)")
	fs.StringVar(&f.clientID, "client-id", "", "pre-registered OAuth client `id`")
	fs.StringVar(&f.clientSecretFile, "client-secret-file", "", "`file` holding the client secret (or set MCPGATE_CLIENT_SECRET)")
	fs.StringVar(&f.clientKeyFile, "client-key-file", "", "PEM private key `file` for private_key_jwt client authentication")
	fs.StringVar(&f.clientKeyID, "client-key-id", "", "`kid` of the private_key_jwt key")
	fs.StringVar(&f.clientMetadataURL, "client-metadata-url", "", "Client ID Metadata Document `URL` to use as client_id where supported")
	fs.StringVar(&f.authMethod, "token-endpoint-auth", "", "force the token endpoint authentication `method` (none, client_secret_basic, client_secret_post, private_key_jwt)")
	fs.Var(&f.scopes, "scope", "scope(s) to request, replacing the automatic choice (repeatable or space-separated)")
	fs.StringVar(&f.issuer, "issuer", "", "choose this authorization server when the server lists several")
	fs.BoolVar(&f.noResource, "no-resource", false, "do not send RFC 8707 resource (IdPs that reject it, such as Entra)")
	fs.BoolVar(&f.noPAR, "no-par", false, "do not use pushed authorization requests unless the server requires them")
	fs.StringVar(&f.dpopMode, "dpop", "auto", "DPoP-bound tokens: auto (when the authorization server offers them), on, off")
	fs.StringVar(&f.redirectHost, "redirect-host", "127.0.0.1", "redirect listener `host` (use localhost when an IdP insists)")
	fs.IntVar(&f.redirectPort, "redirect-port", 0, "redirect listener `port` (0: ephemeral)")
	fs.StringVar(&f.redirectPath, "redirect-path", "/callback", "redirect `path`")
	fs.StringVar(&f.browser, "browser", "", "`command` that opens the authorization URL (the URL is its last argument; no shell)")
	fs.BoolVar(&f.noBrowser, "no-browser", false, "print the authorization URL instead of opening it; a pasted redirect URL is accepted on stdin")
	fs.BoolVar(&f.device, "device", false, "use the device authorization grant (RFC 8628)")
	fs.BoolVar(&f.clientCredentials, "client-credentials", false, "use the client credentials grant (machines; needs --client-id)")
	fs.Var(&f.headers, "header", "extra `Name: value` header for the MCP server (repeatable; visible in the process list: use --header-file for secrets)")
	fs.StringVar(&f.headerFile, "header-file", "", "`file` of extra \"Name: value\" header lines for the MCP server (mode 0600; secrets stay off argv)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM `file` of extra CA certificates to trust")
	fs.BoolVar(&f.allowHTTP, "allow-http", false, "allow plain http to non-loopback servers")
	fs.BoolVar(&f.allowPrivate, "allow-private-urls", false, "allow metadata and endpoints on private, loopback or link-local addresses")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "overall time limit, login included")
	fs.StringVar(&f.protocolVersion, "protocol-version", "", "force an MCP protocol `revision` (default: negotiate)")
	fs.StringVar(&f.authzEndpoint, "authorization-endpoint", "", "override the discovered authorization endpoint (broken servers)")
	fs.StringVar(&f.tokenEndpoint, "token-endpoint", "", "override the discovered token endpoint (broken servers)")
	fs.StringVar(&f.registrationEndpoint, "registration-endpoint", "", "override the discovered registration endpoint (broken servers)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
}

// parseWithURL parses flags placed before and after the server URL.
func parseWithURL(fs *flag.FlagSet, args []string, needURL bool) (string, int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	rest := fs.Args()
	var u string
	if len(rest) > 0 {
		u = rest[0]
		if err := fs.Parse(rest[1:]); err != nil {
			return "", 2, false
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(fs.Output(), "mcpgate %s: unexpected arguments %q\n", fs.Name(), fs.Args())
			return "", 2, false
		}
	}
	if needURL && u == "" {
		fmt.Fprintf(fs.Output(), "mcpgate %s: the MCP server URL is missing (mcpgate %s [flags] URL)\n", fs.Name(), fs.Name())
		return "", 2, false
	}
	return u, 0, true
}

// clientSetup is what a client command builds from its flags.
type clientSetup struct {
	store   vault.Store
	engine  *oauth.Engine
	session *oauth.Credential
	mcpHTTP *http.Client
	headers http.Header
	log     *slog.Logger
	// clientCredentials: the client credentials grant is used, so the MCP
	// client declares the extension.
	clientCredentials bool
}

func (f *clientFlags) setup(serverURL string, e *env, interactive bool) (*clientSetup, error) {
	log, err := telemetry.NewLogger(e.stderr, f.logLevel, "text")
	if err != nil {
		return nil, err
	}
	if f.dpopMode != "auto" && f.dpopMode != "on" && f.dpopMode != "off" {
		return nil, fmt.Errorf("--dpop %q: use auto, on or off", f.dpopMode)
	}
	if f.store == "" {
		f.store = e.getenv("MCPGATE_STORE")
	}
	guard := oauth.NewGuard(serverURL, f.allowHTTP, f.allowPrivate)
	if serverURL != "" {
		if err := guard.CheckURL(serverURL, "MCP server URL"); err != nil {
			return nil, err
		}
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", f.caFile)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// MCP requests: the guard's dialer and same-origin redirects only
	mcpHTTP := oauth.NewMCPHTTPClient(guard, base)
	engine := oauth.NewEngine(guard, base, log)
	dir, err := vault.Dir(e.getenv)
	if err != nil {
		return nil, err
	}
	store, err := vault.Open(f.store, dir, e.getenv, e.stderr)
	if err != nil {
		return nil, err
	}
	cfg := oauth.Config{
		ServerURL: serverURL, Profile: f.profile, ClientID: f.clientID,
		ClientMetadataURL: f.clientMetadataURL, AuthMethod: f.authMethod,
		Issuer: f.issuer, NoResource: f.noResource, DPoP: f.dpopMode, NoPAR: f.noPAR,
		Redirect:          oauth.Redirect{Host: f.redirectHost, Port: f.redirectPort, Path: f.redirectPath},
		ClientCredentials: f.clientCredentials, Device: f.device, NonInteractive: !interactive, Force: f.force, Callback: f.callback,
		Interaction: oauth.Interaction{NoBrowser: f.noBrowser, Out: e.stderr, Getenv: e.getenv},
		Overrides: oauth.ServerMetadata{AuthorizationEndpoint: f.authzEndpoint, TokenEndpoint: f.tokenEndpoint,
			RegistrationEndpoint: f.registrationEndpoint},
	}
	for _, s := range f.scopes {
		cfg.Scopes = append(cfg.Scopes, strings.Fields(s)...)
	}
	if f.browser != "" {
		cfg.Interaction.Browser = strings.Fields(f.browser)
	}
	if f.noBrowser {
		cfg.Interaction.Paste = e.stdin
	}
	if f.clientID != "" {
		if f.clientSecretFile != "" || e.getenv("MCPGATE_CLIENT_SECRET") != "" {
			env := "MCPGATE_CLIENT_SECRET"
			if f.clientSecretFile != "" {
				env = ""
			}
			if cfg.ClientSecret, err = config.ReadSecret("MCPGATE_CLIENT_SECRET", env, "--client-secret-file", f.clientSecretFile, e.getenv); err != nil {
				return nil, err
			}
		}
		if f.clientKeyFile != "" {
			k, err := readPrivateKey(f.clientKeyFile)
			if err != nil {
				return nil, err
			}
			cfg.ClientKey, cfg.ClientKeyID = k, f.clientKeyID
		}
	} else if f.clientSecretFile != "" || f.clientKeyFile != "" {
		return nil, errors.New("--client-secret-file and --client-key-file need --client-id")
	}
	hdr := http.Header{}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: use \"Name: value\"", h)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if f.headerFile != "" {
		hs, err := readHeaderFile(f.headerFile)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			k, v, _ := strings.Cut(h, ":")
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return &clientSetup{
		store: store, engine: engine, session: oauth.NewCredential(engine, store, cfg),
		mcpHTTP: mcpHTTP, headers: hdr, log: log, clientCredentials: f.clientCredentials,
	}, nil
}

func (s *clientSetup) mcpClient(serverURL, protocolVersion string) *mcpclient.Client {
	c := &mcpclient.Client{
		URL: serverURL, HTTP: s.mcpHTTP, Auth: s.session, Headers: s.headers,
		Name: "mcpgate", Version: version, ProtocolVersion: protocolVersion,
	}
	if s.clientCredentials {
		// "Include the extension in its per-request capabilities"
		// (docs/extensions/auth/oauth-client-credentials.mdx, For MCP clients)
		c.Extensions = map[string]any{mcpclient.ExtClientCredentials: map[string]any{}}
	}
	return c
}

func readPrivateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--client-key-file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("--client-key-file %s holds no PEM block", path)
	}
	var k any
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("--client-key-file %s: unsupported PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("--client-key-file %s: %v", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("--client-key-file %s: not a signing key", path)
	}
	return s, nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// readHeaderFile reads "Name: value" lines (blank lines and # comments
// skipped) of --header-file. The file holds secrets (API keys, tokens), so
// it is read like every other secret file (config.ReadSecret): refused
// when other users may read it. An error names the line, never its value.
func readHeaderFile(path string) ([]string, error) {
	raw, err := config.ReadSecret("--header-file", "", "--header-file", path, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for n, l := range strings.Split(raw, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if k, _, ok := strings.Cut(l, ":"); !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header-file %s line %d: use \"Name: value\"", path, n+1)
		}
		out = append(out, l)
	}
	return out, nil
}
