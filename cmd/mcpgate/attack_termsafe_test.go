package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// evil is what a malicious server puts in every string it controls.
const evil = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\u009b31m\u202eexe.txt\u2066\u200b\rX\U000E0041"

// terminalUnsafe returns the first byte or character of s that a terminal
// would act on (ESC, any other control but newline and tab, C1, DEL,
// bidi and invisible formatting characters, invalid UTF-8), or "".
func terminalUnsafe(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			return fmt.Sprintf("invalid UTF-8 at %d", i)
		case r == '\n' || r == '\t':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			return fmt.Sprintf("%U at %d", r, i)
		}
	}
	return ""
}

func runIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if k == "MCPGATE_CONFIG_DIR" {
			return dir
		}
		return ""
	}
	code := dispatch(ctx, args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv})
	return code, out.String(), errb.String()
}

func assertTerminalSafe(t *testing.T, what, out, errs string) {
	t.Helper()
	if u := terminalUnsafe(out); u != "" {
		t.Errorf("%s: stdout carries %s: %q", what, u, out)
	}
	if u := terminalUnsafe(errs); u != "" {
		t.Errorf("%s: stderr carries %s: %q", what, u, errs)
	}
}

// TestStatusEscapesServerStrings: a credential whose issuer, client id,
// subject, scopes and token type a malicious server chose is shown by
// status (text and --json) without a single terminal control.
func TestStatusEscapesServerStrings(t *testing.T) {
	dir := t.TempDir()
	store, err := vault.Open("file", dir, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	server := "http://127.0.0.1:1/mcp"
	rec := oauth.Record{Profile: "default", Server: server, Resource: server + evil, Issuer: "https://as.example/" + evil,
		Subject: "alice" + evil, Client: oauth.Client{ID: "client" + evil, Kind: "dcr" + evil, AuthMethod: "none" + evil},
		Token: oauth.Token{AccessToken: "at", TokenType: "Bearer" + evil, Scopes: []string{"mcp:read", evil}, Expiry: time.Now().Add(time.Hour)}}
	raw, _ := json.Marshal(rec)
	key := oauth.TokenKey("default", rec.Issuer, rec.Client.ID, server)
	store.Put(key, raw)
	store.Put(oauth.ServerKey("default", server), []byte(key))

	code, out, errs := runIn(t, dir, "status", "--store", "file")
	if code != 0 || !strings.Contains(out, `client\u001b]52`) {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	assertTerminalSafe(t, "status", out, errs)
	code, out, errs = runIn(t, dir, "status", "--store", "file", "--json")
	assertTerminalSafe(t, "status --json", out, errs)
	var st []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 1 || st[0]["client_id"] != "client"+evil {
		t.Fatalf("status --json must stay JSON with the same values: %d %q", code, out)
	}
}

// TestCallEscapesServerStrings: tool results, JSON-RPC and HTTP error
// texts of a malicious MCP server reach stdout and stderr escaped.
func TestCallEscapesServerStrings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(b, &m)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/broken") && m.Method == "tools/list" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(500)
			io.WriteString(w, "boom "+evil)
			return
		}
		var result any
		switch m.Method {
		case "initialize":
			result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}}, "serverInfo": map[string]any{"name": evil, "version": "1"}}
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{"name": "t" + evil, "description": evil, "inputSchema": map[string]any{"type": "object"}}}}
		case "tools/call":
			result = map[string]any{"isError": true, "content": []any{map[string]any{"type": "text", "text": evil}}}
		case "":
			w.WriteHeader(202)
			return
		default:
			json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32000, "message": evil}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"call", "--store", "memory", "--protocol-version", "2025-11-25", srv.URL + "/mcp"},
		{"call", "--store", "memory", "--protocol-version", "2025-11-25", "--tool", "t" + evil, srv.URL + "/mcp"},
		{"call", "--store", "memory", "--protocol-version", "2025-11-25", "--method", "x/y", srv.URL + "/mcp"},
		{"call", "--store", "memory", "--protocol-version", "2025-11-25", srv.URL + "/broken"},
	} {
		code, out, errs := runIn(t, dir, args...)
		if out == "" && errs == "" {
			t.Fatalf("%v: no output (exit %d)", args[len(args)-1], code)
		}
		assertTerminalSafe(t, fmt.Sprintf("%q", args[4:]), out, errs)
	}
}
