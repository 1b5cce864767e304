package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

const serveUsage = `usage: mcpgate serve [flags] [-- command args...]

Protects MCP servers as an OAuth 2.1 resource server.

Quick forms:
  mcpgate serve --issuer https://idp.example.com --upstream http://127.0.0.1:9000/mcp
  mcpgate serve --issuer https://idp.example.com -- npx -y @modelcontextprotocol/server-everything stdio

Several upstreams, policies and limits: --config gateway.yaml (see docs/configuration.md).
Precedence: flags over MCPGATE_* environment variables over the config file.
Signals: SIGHUP reloads policy and issuer settings; SIGTERM/SIGINT shut down gracefully.

flags:
`

func init() {
	commands["serve"] = command{"protect MCP servers as an OAuth 2.1 resource server", runServe}
}

// stringList is a repeatable, comma-separable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func serveFlags(args []string, e *env) (config.ServeFlags, int, bool) {
	var f config.ServeFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, serveUsage); fs.PrintDefaults() }
	fs.StringVar(&f.ConfigFile, "config", "", "YAML configuration `file`")
	fs.StringVar(&f.Listen, "listen", "", "listen `address` (default 127.0.0.1:8080)")
	fs.StringVar(&f.PublicURL, "public-url", "", "externally visible base `URL` (default http://<listen>)")
	fs.StringVar(&f.Issuer, "issuer", "", "trusted token `issuer` (quick form)")
	fs.StringVar(&f.JWKSURI, "jwks-uri", "", "JWKS `URL` of the issuer, instead of discovery")
	fs.StringVar(&f.Upstream, "upstream", "", "upstream MCP `URL` (quick form)")
	fs.StringVar(&f.UpstreamTransport, "upstream-transport", "", "upstream transport: streamable (default) or sse")
	fs.StringVar(&f.DPoP, "dpop", "", "DPoP: off, optional (default) or required")
	fs.StringVar(&f.LogLevel, "log-level", "", "log level: debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", "", "log format: text or json")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "", "separate `address` for /metrics")
	fs.StringVar(&f.AuditFile, "audit-file", "", "audit log `file` (default stderr)")
	fs.StringVar(&f.RedisURL, "redis-url", "", "Redis `url` (redis:// or rediss://) for replica-shared state; no password in it (state.redis.password_file)")
	fs.StringVar(&f.AuthorizationServer, "authorization-server", "", `"builtin" to run the built-in authorization server`)
	fs.Var((*stringList)(&f.Scopes), "scope", "scope to advertise in scopes_supported (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, 0, false
		}
		return f, 2, false
	}
	f.Command = fs.Args()
	if len(f.Command) > 0 && len(args) > 0 && !containsDashDash(args) {
		fmt.Fprintf(e.stderr, "mcpgate serve: unexpected argument %q; put a stdio command after --\n", f.Command[0])
		return f, 2, false
	}
	return f, 0, true
}

func containsDashDash(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return true
		}
	}
	return false
}

func runServe(ctx context.Context, args []string, e *env) int {
	flags, code, ok := serveFlags(args, e)
	if !ok {
		return code
	}
	cfg, err := config.LoadGateway(flags, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: invalid configuration:\n%v\n", err)
		return 2
	}
	log, err := telemetry.NewLogger(e.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: %v\n", err)
		return 2
	}
	opts := gateway.Options{Logger: log, Getenv: e.getenv}
	nonces, err := serveNonces(cfg, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: %v\n", err)
		return 2
	}
	opts.DPoPNonces = nonces
	if cfg.AuthorizationServer == "builtin" {
		as, closeAS, err := newBuiltinAS(ctx, cfg, log, e.getenv, nonces)
		if err != nil {
			fmt.Fprintf(e.stderr, "mcpgate serve: authorization server: %v\n", err)
			return 1
		}
		defer closeAS()
		opts.AuthServer = as
	}
	gw, err := gateway.New(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: listen: %v\n", err)
		_ = gw.Shutdown(context.Background())
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, flags, e, gw, log)

	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, ln) }()
	paths := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		paths = append(paths, strings.TrimSuffix(cfg.PublicURL, "/")+u.Path)
	}
	log.Info("mcpgate serving", "listen", ln.Addr().String(), "endpoints", strings.Join(paths, " "), "version", version)
	select {
	case err = <-done:
		_ = gw.Shutdown(context.Background())
	case <-ctx.Done():
		log.Info("shutting down", "deadline", cfg.ShutdownTimeout.Duration.String())
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Duration)
		err = gw.Shutdown(sctx)
		cancel()
		<-done
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// reloadOnHUP re-reads the configuration and applies policy and issuer
// changes; an invalid file leaves the running configuration in force.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, flags config.ServeFlags, e *env, gw *gateway.Gateway, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cfg, err := config.LoadGateway(flags, e.getenv)
			if err != nil {
				log.Error("reload refused: invalid configuration; the running configuration stays in force", "err", err)
				continue
			}
			if err := gw.Reload(ctx, cfg); err != nil {
				log.Error("reload failed", "err", err)
			}
		}
	}
}
