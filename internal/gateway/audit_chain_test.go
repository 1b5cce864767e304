package gateway

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/auditlog"
	"github.com/mcpgate/mcpgate/internal/config"
)

// TestAuditFileIsChainedSignedAndContinued runs real requests through the
// gateway with a signed, file-backed audit log, restarts the gateway on the
// same file, and verifies the whole chain with the public key.
func TestAuditFileIsChainedSignedAndContinued(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "audit.key")
	if _, err := auditlog.GenerateKey(keyFile); err != nil {
		t.Fatal(err)
	}
	pub, err := auditlog.LoadPublicKey(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "audit.jsonl")
	mutate := func(c *config.Gateway) {
		c.Audit = config.Audit{File: file, Sign: config.AuditSign{KeyFile: keyFile, Every: 3}}
	}
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin_delete","arguments":{}}}`
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for run := range 2 {
		tg := startGateway(t, mutate)
		reader := tg.token(t, "alice", "mcp:read")
		for range 4 {
			tg.do(t, "POST", "/mcp", list, with(bearer(reader), "Accept", "application/json", "Mcp-Protocol-Version", "2025-06-18"))
		}
		if r := tg.do(t, "POST", "/mcp", call, bearer(reader)); r.status != http.StatusForbidden {
			t.Fatalf("run %d: status %d", run, r.status)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := tg.gw.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	res, err := auditlog.Verify([]string{file}, auditlog.VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	text := string(b)
	if res.Records < 14 || res.UnsignedTail != 0 || res.Signatures < 6 ||
		!strings.Contains(text, `"kind":"restart","sign_every":3,"clean":true`) ||
		!strings.Contains(text, `"decision":"deny"`) {
		t.Fatalf("res %+v\n%s", res, text)
	}
	// One denial edited away from the file is found.
	edited := strings.Replace(text, `"decision":"deny"`, `"decision":"allow"`, 1)
	os.WriteFile(file, []byte(edited), 0o600)
	if _, err := auditlog.Verify([]string{file}, auditlog.VerifyOptions{Key: pub}); err == nil || !strings.Contains(err.Error(), "edited") {
		t.Fatalf("edited denial: %v", err)
	}
}
