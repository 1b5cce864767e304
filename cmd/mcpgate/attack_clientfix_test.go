package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

// mcpServer answers initialize, tools/list (raw result text) and every
// other method with a JSON-RPC error whose message is errMsg; it records
// the X-Api-Key header of each request.
func mcpServer(t *testing.T, toolsResult, errMsg string) (*httptest.Server, func() []string) {
	var mu sync.Mutex // guards keys
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("X-Api-Key"))
		mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(b, &m)
		w.Header().Set("Content-Type", "application/json")
		switch m.Method {
		case "initialize":
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`)
		case "tools/list":
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":`+toolsResult+`}`)
		case "":
			w.WriteHeader(202)
		default:
			json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32000, "message": errMsg}})
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), keys...) }
}

// TestCallOutputIsJSONWithInvalidUTF8: a tools/list result holding bytes
// that are not UTF-8 (and a UTF-8-encoded lone surrogate) still prints as
// valid JSON (call | jq), the bad bytes as U+FFFD.
func TestCallOutputIsJSONWithInvalidUTF8(t *testing.T) {
	for _, bad := range []string{"\xff\xfe", "\xed\xa0\x80", "\xc3", "\x80x"} {
		srv, _ := mcpServer(t, `{"tools":[{"name":"t`+bad+`","description":"d`+bad+`","inputSchema":{"type":"object"}}]}`, "")
		code, out, errs := runIn(t, t.TempDir(), "call", "--store", "memory", "--no-login", "--protocol-version", "2025-11-25", srv.URL+"/mcp")
		var doc struct {
			Tools []struct{ Name string } `json:"tools"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Tools) != 1 || !strings.HasPrefix(doc.Tools[0].Name, "t\ufffd") {
			t.Errorf("%q: exit %d, stdout is not the JSON result: %q %q", bad, code, out, errs)
		}
	}
}

// TestOneLinePerValue: a newline (or CR, tab, U+2028) in a value a server
// chose cannot add a line to login/status rows, doctor rows or an error
// line.
func TestOneLinePerValue(t *testing.T) {
	forged := func(out string) bool {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimLeft(l, " \t\r"), "FORGED") {
				return true
			}
		}
		return false
	}
	inj := "\nFORGED issuer https://accounts.google.com"
	dir := t.TempDir()
	store, err := vault.Open("file", dir, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	server := "http://127.0.0.1:1/mcp"
	rec := oauth.Record{Profile: "default", Server: server, Resource: server + inj, Issuer: "https://as.example/" + inj,
		Subject: "alice" + inj, Client: oauth.Client{ID: "cid" + inj, Kind: "dcr" + inj, AuthMethod: "none\r" + inj},
		Token: oauth.Token{AccessToken: "at", TokenType: "Bearer" + inj, Scopes: []string{"a", inj}, Expiry: time.Now().Add(time.Hour)}}
	raw, _ := json.Marshal(rec)
	key := oauth.TokenKey("default", rec.Issuer, rec.Client.ID, server)
	store.Put(key, raw)
	store.Put(oauth.ServerKey("default", server), []byte(key))
	code, out, errs := runIn(t, dir, "status", "--store", "file")
	if code != 0 || forged(out) || strings.Count(out, "\n") != 9 {
		t.Errorf("status: exit %d, forged lines:\n%s%s", code, out, errs)
	}
	code, out, _ = runIn(t, dir, "status", "--store", "file", "--json")
	var st []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 1 || st[0]["client_id"] != "cid"+inj {
		t.Errorf("status --json must keep the value: %q", out)
	}

	// doctor: AS metadata and PRM values with newlines stay in their row
	base := fakeServer(t, func(b string) any {
		return map[string]any{"resource": b + "/mcp", "authorization_servers": []string{b}, "scopes_supported": []string{"s" + inj}}
	}, func(b string) any {
		return map[string]any{"issuer": b, "authorization_endpoint": b + "/a", "token_endpoint": b + "/t", "registration_endpoint": b + "/r",
			"code_challenge_methods_supported": []string{"S256"}, "authorization_response_iss_parameter_supported": true,
			"scopes_supported": []string{"x" + inj}, "token_endpoint_auth_methods_supported": []string{"none" + inj}, "dpop_signing_alg_values_supported": []string{"ES256\u2028" + inj}}
	})
	code, out, errs = runIn(t, t.TempDir(), "doctor", "--store", "memory", base+"/mcp")
	if forged(out) || forged(errs) || !strings.Contains(out, `x\u000aFORGED`) {
		t.Errorf("doctor: exit %d, forged lines:\n%s%s", code, out, errs)
	}

	// an error line quoting a server's message
	srv, _ := mcpServer(t, `{"tools":[]}`, "boom"+inj)
	code, out, errs = runIn(t, t.TempDir(), "call", "--store", "memory", "--no-login", "--protocol-version", "2025-11-25", "--method", "x/y", srv.URL+"/mcp")
	if code == 0 || forged(errs) || forged(out) || !strings.Contains(errs, "boom") {
		t.Errorf("call error: exit %d, forged lines:\n%s%s", code, out, errs)
	}
}

// TestHeaderFileForEveryClientCommand: call (like connect) takes header
// secrets from a file that only the user may read, so they never need to
// be on argv; a file readable by others is refused, and an error never
// repeats a header value.
func TestHeaderFileForEveryClientCommand(t *testing.T) {
	srv, keys := mcpServer(t, `{"tools":[]}`, "")
	dir := t.TempDir()
	hf := filepath.Join(dir, "headers")
	os.WriteFile(hf, []byte("# api key\nX-Api-Key: s3cret-from-file\n"), 0o600)
	code, out, errs := runIn(t, dir, "call", "--store", "memory", "--no-login", "--protocol-version", "2025-11-25", "--header-file", hf, srv.URL+"/mcp")
	if code != 0 || !strings.Contains(out, "tools") {
		t.Fatalf("call --header-file: exit %d %q %q", code, out, errs)
	}
	if got := keys(); len(got) == 0 || got[0] != "s3cret-from-file" {
		t.Fatalf("the header did not reach the server: %q", got)
	}
	os.Chmod(hf, 0o644)
	for _, cmd := range []string{"call", "login", "doctor", "connect"} {
		code, _, errs = runIn(t, dir, cmd, "--store", "memory", "--header-file", hf, srv.URL+"/mcp")
		if code == 0 || !strings.Contains(errs, "readable by other users") || strings.Contains(errs, "s3cret") {
			t.Errorf("%s with a 0644 header file: exit %d %q", cmd, code, errs)
		}
	}
	os.Chmod(hf, 0o600)
	os.WriteFile(hf, []byte("X-Api-Key s3cret-no-colon\n"), 0o600)
	code, _, errs = runIn(t, dir, "call", "--store", "memory", "--header-file", hf, srv.URL+"/mcp")
	if code == 0 || !strings.Contains(errs, "line 1") || strings.Contains(errs, "s3cret") {
		t.Errorf("malformed header file: exit %d %q", code, errs)
	}
}

// TestConnectLogFileIsFiltered: what connect writes to --log-file
// (device codes and URLs a server chose, messages) passes the same
// terminal filter as its stderr.
func TestConnectLogFileIsFiltered(t *testing.T) {
	var base string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		case "/.well-known/oauth-protected-resource/mcp":
			json.NewEncoder(w).Encode(map[string]any{"resource": base + "/mcp", "authorization_servers": []string{base}})
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(map[string]any{"issuer": base, "authorization_endpoint": base + "/a", "token_endpoint": base + "/token",
				"device_authorization_endpoint": base + "/device", "code_challenge_methods_supported": []string{"S256"},
				"token_endpoint_auth_methods_supported": []string{"none"}})
		case "/device":
			json.NewEncoder(w).Encode(map[string]any{"device_code": "dc", "user_code": "UC" + evil + "\xff", "verification_uri": base + "/dev\u202eice",
				"interval": 1, "expires_in": 60})
		case "/token":
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"authorization_pending"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	base = srv.URL
	dir := t.TempDir()
	logf := filepath.Join(dir, "conn.log")
	pr, pw := io.Pipe()
	go io.WriteString(pw, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`+"\n")
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if k == "MCPGATE_CONFIG_DIR" {
			return dir
		}
		return ""
	}
	go func() { <-ctx.Done(); pw.Close() }()
	dispatch(ctx, []string{"connect", "--store", "memory", "--device", "--client-id", "cid", "--log-file", logf, "--transport", "streamable", srv.URL + "/mcp"},
		&env{stdin: pr, stdout: &out, stderr: &errb, getenv: getenv})
	lb, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lb), "UC") {
		t.Fatalf("the device code did not reach the log file: %q (stderr %q)", lb, errb.String())
	}
	if u := terminalUnsafe(string(lb)); u != "" {
		t.Errorf("the log file carries %s: %q", u, lb)
	}
	if u := terminalUnsafe(errb.String()); u != "" {
		t.Errorf("stderr carries %s: %q", u, errb.String())
	}
}
