package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/termsafe"
)

// TestCallShowsURLElicitation: `mcpgate call` shows a URL elicitation with
// its host and never opens it (client/elicitation "Safe URL Handling":
// clients "MUST NOT open the URL without explicit consent from the user",
// "MUST show the full URL to the user", "SHOULD highlight the domain");
// what the server chose goes through termsafe, and a refused URL is not
// shown.
func TestCallShowsURLElicitation(t *testing.T) {
	var out strings.Builder
	w := termsafe.NewWriter(&out)
	err := &mcpclient.RPCError{Code: -32042, Message: "needs auth", Data: json.RawMessage(
		`{"elicitations":[{"mode":"url","elicitationId":"e","url":"https://mcp.example.com/connect?x=1","message":"Connect \u001b[31mnow"}]}`)}
	if !showURLElicitations(w, err, nil) {
		t.Fatal("a -32042 error was not shown")
	}
	got := out.String()
	for _, want := range []string{"host: mcp.example.com", "URL:  https://mcp.example.com/connect?x=1", "does not open it", `Connect \u001b[31mnow`} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Fatalf("an escape sequence reached the terminal: %q", got)
	}
	out.Reset()
	res := json.RawMessage(`{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create","params":{"mode":"url","message":"m","url":"javascript:alert(1)"}}}}`)
	if !showURLElicitations(w, nil, res) || strings.Contains(out.String(), "alert") || !strings.Contains(out.String(), "refuses to show") {
		t.Fatalf("a refused URL: %q", out.String())
	}
	if showURLElicitations(w, nil, json.RawMessage(`{"content":[{"type":"text","text":"\"url\""}]}`)) {
		t.Fatal("an ordinary result was taken for an elicitation")
	}
}
