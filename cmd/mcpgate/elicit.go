package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/termsafe"
)

// showURLElicitations prints the URL-mode elicitations a call's answer
// holds — a 2025-11-25 -32042 error or a 2026-07-28 InputRequiredResult —
// and reports whether there were any. mcpgate never opens such a URL: it
// shows the full URL and its host ("MUST show the full URL to the user
// for examination before consent", "SHOULD highlight the domain of the
// URL") through termsafe, and leaves opening it to the user. A URL that
// fails mcp.CheckElicitationURL is not shown at all.
func showURLElicitations(w io.Writer, err error, res json.RawMessage) bool {
	var msg []byte
	var re *mcpclient.RPCError
	switch {
	case errors.As(err, &re) && re.Code == mcp.CodeURLElicitationRequired:
		msg, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 0, "error": re})
	case err == nil && len(res) > 0:
		msg, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 0, "result": res})
	default:
		return false
	}
	found, _ := mcp.URLElicitations(msg)
	if len(found) == 0 {
		return false
	}
	for _, e := range found {
		host, cerr := mcp.CheckElicitationURL(e.URL)
		if cerr != nil {
			fmt.Fprintf(w, "mcpgate call: the server asked you to open a URL that mcpgate refuses to show (%s)\n",
				strings.ReplaceAll(cerr.Error(), "\n", ": "))
			continue
		}
		fmt.Fprintf(w, "mcpgate call: the server asks you to open a web page; mcpgate does not open it.\n  %s\n  host: %s\n  URL:  %s\n",
			termsafe.String(e.Message), termsafe.String(host), termsafe.String(e.URL))
		fmt.Fprintf(w, "Open it in your browser only if you trust %s, then run the command again.\n", termsafe.String(host))
	}
	return true
}
