package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/bridge"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/termsafe"
)

func init() {
	commands["connect"] = command{"stdio bridge: let a local MCP client reach a remote (protected) server", runConnect}
}

// runConnect is the stdio bridge. stdout carries MCP only; everything else
// goes to stderr (and --log-file).
func runConnect(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("connect", e)
	logFile := fs.String("log-file", "", "also write the log to this `file` (0600)")
	transport := fs.String("transport", "auto", "remote transport: auto (Streamable HTTP, HTTP+SSE fallback), streamable, or sse")
	serverURL, code, ok := parseWithURL(fs, args, true)
	if !ok {
		return code
	}
	if *transport != "auto" && *transport != "streamable" && *transport != "sse" {
		fmt.Fprintf(e.stderr, "mcpgate connect: --transport %q: use auto, streamable or sse\n", *transport)
		return 2
	}
	logOut := e.stderr
	if *logFile != "" {
		lf, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fail(e, "connect", fmt.Errorf("--log-file: %w", err))
		}
		defer lf.Close()
		// the log file is read with cat or tail -f on a terminal: the
		// same filter as stderr (device codes, authorization URLs and
		// messages a server chose reach it through Interaction.Out)
		tlf := termsafe.NewWriter(lf)
		defer tlf.Flush()
		logOut = io.MultiWriter(e.stderr, tlf)
	}
	errEnv := *e
	errEnv.stderr = logOut
	s, err := f.setup(serverURL, &errEnv, true)
	if err != nil {
		return fail(e, "connect", err)
	}
	log, _ := telemetry.NewLogger(logOut, f.logLevel, "text")
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &mcpclient.Transport{URL: serverURL, HTTP: s.mcpHTTP, Auth: s.session, Headers: s.headers}
	o := bridge.Options{Transport: t, Stdin: e.stdin, Stdout: e.stdout, Log: log, ProtocolVersion: f.protocolVersion, Mode: *transport}
	if s.clientCredentials {
		// the bridge, not its stdio client, obtains the credential: it
		// declares the extension (docs/extensions/auth/
		// oauth-client-credentials.mdx, For MCP clients, Declare support)
		o.Extensions = map[string]any{mcpclient.ExtClientCredentials: map[string]any{}}
	}
	b := bridge.New(o)
	if err := b.Run(ctx); err != nil {
		fmt.Fprintf(logOut, "mcpgate connect: %s\n", termsafe.String(err.Error()))
		return 1
	}
	return 0
}
