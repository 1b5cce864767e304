package main

import "github.com/mcpgate/mcpgate/internal/termsafe"

// terminalSafe routes a command's output streams through termsafe, so
// that no string a server chose (client ids, scopes, issuers, error
// descriptions, metadata in doctor, tool results of call, device codes,
// authorization URLs) can write control or escape sequences to the user's
// terminal: one rule at the boundary instead of a call at each print.
// connect's stdout is the exception: it carries the MCP byte stream for
// the local client, never a terminal.
func terminalSafe(e *env, cmd string) {
	e.stderr = termsafe.NewWriter(e.stderr)
	if cmd != "connect" {
		e.stdout = termsafe.NewWriter(e.stdout)
	}
}
