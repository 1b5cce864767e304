//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAuditChainAcrossRotationCrashAndSyslog runs the real binary with a
// signed, rotating audit log and a syslog copy over UDP on loopback: it
// makes requests with tokens from the certified OP, kills the gateway with
// SIGKILL, leaves a torn line as a crash mid-write would, restarts it on
// the same file, stops it, and then `mcpgate audit verify --key` must
// accept every file in order, name the torn line, and fail on a deleted
// record or a left-out file. Each syslog datagram is an RFC 5424 message
// whose MSG is byte for byte a line of the file.
func TestAuditChainAcrossRotationCrashAndSyslog(t *testing.T) {
	op := StartOP(t, "plain")
	_, m := Start(t, "everything-server", []string{Node22(t), "fixtures/everything-server/server.mjs"}, []string{"PORT=0"}, readyLine)
	dir := t.TempDir()
	key := filepath.Join(dir, "audit.key")
	mustRun(t, 0, Mcpgate(t), "audit", "keygen", "--out", key)
	sys := listenSyslog(t)
	port := FreePort(t)
	audit := filepath.Join(dir, "audit.jsonl")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
limits:
  requests_per_second: 1000
  burst: 1000
issuers:
  - issuer: %s
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
audit:
  file: %s
  rotate_bytes: 65536
  sign:
    key_file: %s
    every: 7
  syslog:
    network: udp
    address: %s
`, port, op.Issuer, m[1], audit, key, sys.addr)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	serve := func() *Proc {
		p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
		(&Gateway{URL: gwURL, Proc: p}).WaitReady(t)
		return p
	}
	p := serve()
	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gwURL+"/mcp", "mcp:read", nil)
	auditRequests(t, gwURL, tok, 400)
	p.Signal(syscall.SIGKILL)
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// SIGKILL never tears a write(2); append what a torn one leaves.
	f, _ := os.OpenFile(audit, os.O_WRONLY|os.O_APPEND, 0)
	const torn = `{"time":"2026-12-02T18:00:00Z","request_id":"torn","ups`
	f.WriteString(torn)
	f.Close()

	p = serve()
	auditRequests(t, gwURL, tok, 20)
	p.Stop()

	files := auditFiles(t, audit)
	if len(files) < 3 {
		t.Fatalf("want at least two rotations: %v", files)
	}
	out := mustRun(t, 0, append([]string{Mcpgate(t), "audit", "verify", "--key", key + ".pub"}, files...)...)
	if !regexp.MustCompile(`^ok: \d+ records, chain intact, \d+ signatures verified\n`).MatchString(out) || !strings.Contains(out, "note: torn line at "+audit) {
		t.Fatalf("verify:\n%s", out)
	}
	t.Logf("%d files: %s", len(files), out)
	text, _ := os.ReadFile(audit)
	if !bytes.Contains(text, fmt.Appendf(nil, `"kind":"restart","sign_every":7,"clean":false,"torn_bytes":%d`, len(torn))) {
		t.Fatalf("no restart record naming the crash and the torn line:\n%s", text)
	}

	// The syslog copy: RFC 5424 header, MSG identical to a line of a file.
	all := map[string]bool{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			all[l] = true
		}
	}
	head := regexp.MustCompile(`^<86>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ mcpgate \d+ audit - `)
	msgs := sys.messages()
	if len(msgs) < 200 {
		t.Fatalf("syslog received %d messages", len(msgs))
	}
	for _, msg := range msgs {
		loc := head.FindStringIndex(msg)
		if loc == nil || !all[msg[loc[1]:]] {
			t.Fatalf("syslog message is not RFC 5424 with an audit line: %q", msg)
		}
	}

	t.Run("a left-out file", func(t *testing.T) {
		args := append([]string{Mcpgate(t), "audit", "verify", "--key", key + ".pub", files[0]}, files[2:]...)
		if out := mustRun(t, 1, args...); !strings.Contains(out, "FAILED: "+files[2]+":1 (seq ") || !strings.Contains(out, "missing between the files") {
			t.Fatalf("verify: %s", out)
		}
	})
	t.Run("a deleted record", func(t *testing.T) {
		b, _ := os.ReadFile(files[0])
		lines := strings.SplitAfter(string(b), "\n")
		os.WriteFile(files[0], []byte(strings.Join(append(lines[:10:10], lines[11:]...), "")), 0o600)
		out := mustRun(t, 1, append([]string{Mcpgate(t), "audit", "verify", "--key", key + ".pub"}, files...)...)
		if !strings.Contains(out, "FAILED: "+files[0]+":11 (seq 12") || !strings.Contains(out, "1 record (seq 11) missing") {
			t.Fatalf("verify: %s", out)
		}
	})

}

// auditRequests sends n tools/list requests (stateless 2026-07-28 form);
// each one is an audit record whatever the upstream answers.
func auditRequests(t *testing.T, gwURL, tok string, n int) {
	t.Helper()
	for i := range n {
		req, _ := http.NewRequest("POST", gwURL+"/mcp", strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"e2e","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`, i)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// auditFiles lists the rotated files oldest first, then the current one.
func auditFiles(t *testing.T, path string) []string {
	names, _ := filepath.Glob(path + ".*")
	sort.Strings(names)
	return append(names, path)
}

// mustRun runs argv and requires exit code want; it returns stdout+stderr.
func mustRun(t *testing.T, want int, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("%v: exit %d, want %d\n%s", argv[1:], code, want, out)
	}
	return string(out)
}

// syslogUDP collects datagrams on a loopback UDP port.
type syslogUDP struct {
	addr string
	mu   sync.Mutex // guards msgs
	msgs []string
}

func listenSyslog(t *testing.T) *syslogUDP {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.UDPConn).SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	s := &syslogUDP{addr: c.LocalAddr().String()}
	go func() {
		buf := make([]byte, 70000)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *syslogUDP) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}
