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
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

const serveUsage = `usage: mcpgate serve [flags] [-- command args...]

Protects MCP servers as an OAuth 2.1 resource server.

Quick forms:
  mcpgate serve --issuer https://idp.example.com --upstream http://127.0.0.1:9000/mcp
  mcpgate serve --issuer https://idp.example.com -- npx -y @modelcontextprotocol/server-everything stdio

Several upstreams, policies and limits: --config gateway.yaml (see docs/configuration.md).
Precedence: flags over MCPGATE_* environment variables over the config file.
Signals: SIGHUP reloads policy and issuer settings; SIGTERM/SIGINT shut down gracefully:
/readyz fails at once, requests are served for --shutdown-drain (a second SIGTERM skips
the rest), then in-flight requests finish within shutdown_timeout.

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
	fs.StringVar(&f.ShutdownDrain, "shutdown-drain", "", "`duration` to keep serving after SIGTERM with /readyz failing (shutdown_drain; default 0)")
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

// runServe runs the gateway until ctx ends (SIGTERM or SIGINT), then stops
// it gracefully (stopGracefully). Everything the gateway runs lives on
// life, not ctx, so that it keeps serving through the drain.
func runServe(ctx context.Context, args []string, e *env) int {
	flags, code, ok := serveFlags(args, e)
	if !ok {
		return code
	}
	// Registered before the gateway starts, so a second signal during the
	// drain is seen (main's NotifyContext keeps the first from killing us).
	stops := make(chan os.Signal, 4)
	signal.Notify(stops, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stops)
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
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
	opts := gateway.Options{Logger: log, Getenv: e.getenv, TokenExchangers: tokenExchangers(e.getenv, log)}
	nonces, err := serveNonces(cfg, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate serve: %v\n", err)
		return 2
	}
	opts.DPoPNonces = nonces
	if cfg.State.Redis.Enabled() {
		// One handle for the gateway and the built-in authorization server.
		if opts.Redis, err = state.Open(cfg.State.Redis, e.getenv); err != nil {
			fmt.Fprintf(e.stderr, "mcpgate serve: %v\n", err)
			return 2
		}
		defer opts.Redis.Close()
	}
	if cfg.AuthorizationServer == "builtin" {
		as, closeAS, err := newBuiltinAS(life, cfg, log, e.getenv, nonces, opts.Redis)
		if err != nil {
			fmt.Fprintf(e.stderr, "mcpgate serve: authorization server: %v\n", err)
			return 1
		}
		defer closeAS()
		opts.AuthServer = as
	}
	gw, err := gateway.New(life, cfg, opts)
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
	go reloadOnHUP(life, hup, flags, e, gw, log)

	done := make(chan error, 1)
	go func() { done <- gw.Serve(life, ln) }()
	paths := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		paths = append(paths, strings.TrimSuffix(cfg.PublicURL, "/")+u.Path)
	}
	log.Info("mcpgate serving", "listen", ln.Addr().String(), "endpoints", strings.Join(paths, " "), "version", version)
	select {
	case err = <-done:
		_ = gw.Shutdown(context.Background())
	case <-ctx.Done():
		err = stopGracefully(gw, cfg, stops, 0, log)
		<-done
	case <-stops:
		err = stopGracefully(gw, cfg, stops, 1, log)
		<-done
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// stopGracefully drains for shutdown_drain — /readyz fails, everything is
// still served — then shuts the gateway down within shutdown_timeout.
// seen is how many stop signals were already taken from stops; a second
// one ends the drain early.
func stopGracefully(gw *gateway.Gateway, cfg *config.Gateway, stops <-chan os.Signal, seen int, log interface{ Info(string, ...any) }) error {
	gw.Drain()
	if d := cfg.ShutdownDrain.Duration; d > 0 {
		log.Info("draining before shutdown", "drain", d.String(), "hint", "send SIGTERM again to skip the rest of the drain")
		if waitDrain(d, stops, seen) {
			log.Info("second stop signal: ending the drain early")
		}
	}
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout.Duration.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Duration)
	defer cancel()
	return gw.Shutdown(sctx)
}

// waitDrain waits d, or until the second stop signal; it reports whether
// the signal cut the drain short. The signal that started the stop also
// arrives on stops when main's context saw it first (seen 0): signals are
// counted, not merely awaited.
func waitDrain(d time.Duration, stops <-chan os.Signal, seen int) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false
		case <-stops:
			if seen++; seen >= 2 {
				return true
			}
		}
	}
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
