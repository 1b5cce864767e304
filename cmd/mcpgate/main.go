// Command mcpgate makes the Model Context Protocol safe to use across a
// network: a gateway that protects MCP servers as an OAuth 2.1 resource server
// (serve), a stdio bridge and a local broker for clients (connect, broker),
// and credential commands (login, logout, status, call, doctor).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, env *env) int
}

// env is what a command may touch of the process: streams and environment.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// commands is the subcommand table. Each entry's implementation lives in
// cmd_<name>.go.
var commands = map[string]command{
	"version": {"print the version", runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	terminalSafe(e, args[0])
	if !ok {
		fmt.Fprintf(e.stderr, "mcpgate: unknown command %q; run 'mcpgate help' for the list\n", args[0])
		return 2
	}
	return c.run(ctx, args[1:], e)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mcpgate <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'mcpgate <command> -h' for a command's flags.")
}
