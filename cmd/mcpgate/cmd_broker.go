package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/broker"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

func init() {
	commands["broker"] = command{"local HTTP endpoint forwarding to remote servers with tokens injected", runBroker}
}

// brokerFile is the --config format (several remotes by path prefix).
type brokerFile struct {
	Listen            string         `yaml:"listen"`
	RequireLocalToken string         `yaml:"require_local_token"`
	AllowedHosts      []string       `yaml:"allowed_hosts"`
	AllowedOrigins    []string       `yaml:"allowed_origins"`
	Remotes           []brokerRemote `yaml:"remotes"`
}

type brokerRemote struct {
	Prefix           string            `yaml:"prefix"`
	URL              string            `yaml:"url"`
	Profile          string            `yaml:"profile"`
	ClientID         string            `yaml:"client_id"`
	ClientSecretFile string            `yaml:"client_secret_file"`
	Scopes           []string          `yaml:"scopes"`
	DPoP             string            `yaml:"dpop"`
	NoResource       bool              `yaml:"no_resource"`
	Headers          map[string]string `yaml:"headers"`
}

func runBroker(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("broker", e)
	listen := fs.String("listen", "127.0.0.1:8976", "listen `address` (loopback unless --require-local-token)")
	cfgFile := fs.String("config", "", "YAML `file` with several remotes by path prefix (docs/broker.md)")
	tokenFile := fs.String("require-local-token", "", "make clients present a local secret, written 0600 to this `file`")
	detach := fs.Bool("detach", false, "run in the background (with --pid-file and --log-file)")
	pidFile := fs.String("pid-file", "", "pid `file` for --detach (default <config dir>/broker.pid)")
	logFile := fs.String("log-file", "", "log `file` for --detach (default <config dir>/broker.log)")
	serverURL, code, ok := parseWithURL(fs, args, false)
	if !ok {
		return code
	}
	var bf brokerFile
	if *cfgFile != "" {
		raw, err := os.ReadFile(*cfgFile)
		if err != nil {
			return fail(e, "broker", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&bf); err != nil {
			return fail(e, "broker", fmt.Errorf("--config %s: %v", *cfgFile, err))
		}
	}
	if serverURL != "" {
		bf.Remotes = append(bf.Remotes, brokerRemote{URL: serverURL})
	}
	if len(bf.Remotes) == 0 {
		fmt.Fprintln(e.stderr, "mcpgate broker: give a server URL or --config with remotes")
		return 2
	}
	if bf.Listen == "" || flagSet(fs, "listen") {
		bf.Listen = *listen
	}
	if *tokenFile != "" {
		bf.RequireLocalToken = *tokenFile
	}
	if !config.IsLoopbackListen(bf.Listen) && bf.RequireLocalToken == "" {
		fmt.Fprintf(e.stderr, "mcpgate broker: --listen %s is not loopback; anyone who reaches it would use your credentials — add --require-local-token FILE\n", bf.Listen)
		return 2
	}
	if *detach {
		return detachBroker(e, args, *pidFile, *logFile)
	}
	log, _ := telemetry.NewLogger(e.stderr, f.logLevel, "text")
	ln, err := net.Listen("tcp", bf.Listen)
	if err != nil {
		return fail(e, "broker", fmt.Errorf("%v (choose another --listen)", err))
	}
	defer ln.Close()
	addr := ln.Addr().String()
	var token string
	if bf.RequireLocalToken != "" {
		if token, err = writeLocalToken(bf.RequireLocalToken); err != nil {
			return fail(e, "broker", err)
		}
	}
	var remotes []*broker.Remote
	var base *clientSetup
	for i, r := range bf.Remotes {
		rf := *f
		rf.scopes = append(multiFlag(nil), f.scopes...)
		if r.ClientID != "" {
			rf.clientID, rf.clientSecretFile = r.ClientID, r.ClientSecretFile
		}
		if len(r.Scopes) > 0 {
			rf.scopes = multiFlag{strings.Join(r.Scopes, " ")}
		}
		if r.DPoP != "" {
			rf.dpopMode = r.DPoP
		}
		if r.Profile != "" {
			rf.profile = r.Profile
		}
		rf.noResource = rf.noResource || r.NoResource
		for k, v := range r.Headers {
			rf.headers = append(rf.headers, k+": "+v)
		}
		cb, err := oauth.ExternalListener(broker.CallbackURI(addr, r.Prefix))
		if err != nil {
			return fail(e, "broker", err)
		}
		rf.callback = cb
		s, err := rf.setup(r.URL, e, false)
		if err != nil {
			return fail(e, "broker", fmt.Errorf("remote %d (%s): %w", i+1, r.URL, err))
		}
		if base == nil {
			base = s
		}
		remotes = append(remotes, &broker.Remote{Prefix: r.Prefix, URL: r.URL, Session: s.session, Callback: cb, Headers: s.headers, HTTP: s.mcpHTTP})
	}
	b, err := broker.New(broker.Options{Remotes: remotes, HTTP: base.mcpHTTP, Log: log, Addr: addr,
		AllowedHosts: bf.AllowedHosts, AllowedOrigins: bf.AllowedOrigins, LocalToken: token})
	if err != nil {
		return fail(e, "broker", err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	for _, r := range remotes {
		p := strings.TrimSuffix(r.Prefix, "/")
		if token != "" {
			// the login needs the local token: it answers a one-time link
			fmt.Fprintf(e.stderr, "mcpgate broker: http://%s%s/mcp → %s (log in: curl -H \"X-Mcpgate-Token: $(cat %s)\" http://%s%s/oauth/login, then open the link it prints)\n",
				addr, p, r.URL, bf.RequireLocalToken, addr, p)
			continue
		}
		fmt.Fprintf(e.stderr, "mcpgate broker: http://%s%s/mcp → %s (log in: http://%s%s/oauth/login)\n", addr, p, r.URL, addr, p)
	}
	fmt.Fprintf(e.stderr, "mcpgate broker listening on %s\n", addr)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fail(e, "broker", err)
		}
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	return 0
}

// flagSet reports whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// writeLocalToken creates a random local secret in path (0600), reusing an
// existing one so that configured clients keep working across restarts.
func writeLocalToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if fi, _ := os.Stat(path); fi != nil && fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("--require-local-token %s is readable by other users; chmod 600 it", path)
		}
		if t := strings.TrimSpace(string(b)); len(t) >= 32 {
			return t, nil
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	t := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("--require-local-token: %w", err)
	}
	return t, nil
}
