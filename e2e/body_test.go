//go:build e2e

package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// heapAlloc reads go_memstats_heap_alloc_bytes from the gateway's metrics.
func heapAlloc(t *testing.T, metricsURL string) int64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_alloc_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatal("no go_memstats_heap_alloc_bytes")
	return 0
}

// TestE2ESlowBodiesPinNothing (issue 11 hole 8, through the binary): 64
// unauthenticated connections announce 4 MiB bodies and send 1 KiB; 16 more
// announce 1 MiB forms to the built-in authorization server. Every one is
// answered at once, without the gateway waiting for (or holding) the body,
// and its heap does not grow by what was announced.
func TestE2ESlowBodiesPinNothing(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	port, mport := FreePort(t), FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  users_file: %s
upstreams:
  - url: %s
metrics:
  listen: 127.0.0.1:%d
`, port, filepath.Join(dir, "as.db"), writeUsers(t, dir), up.URL, mport)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, regexp.MustCompile(`mcpgate serving`))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	WaitHTTP(t, "http://"+addr+"/healthz")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	before := heapAlloc(t, metricsURL)

	slow := func(path, ctype string, announce int) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
			path, addr, ctype, announce, strings.Repeat("a", 1024))
		return c, bufio.NewReader(c)
	}
	type conn struct {
		c    net.Conn
		br   *bufio.Reader
		want int
	}
	var conns []conn
	for range 64 {
		c, br := slow("/mcp", "application/json", 4<<20)
		conns = append(conns, conn{c, br, 401})
	}
	for range 16 {
		c, br := slow("/token", "application/x-www-form-urlencoded", 1<<20)
		conns = append(conns, conn{c, br, 413})
	}
	for i, c := range conns {
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("conn %d: no answer while the body is incomplete: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != c.want || !resp.Close {
			t.Fatalf("conn %d: %d (close %v), want %d and the connection closed", i, resp.StatusCode, resp.Close, c.want)
		}
	}
	grew := heapAlloc(t, metricsURL) - before
	t.Logf("80 slow bodies (272 MiB announced): gateway heap grew %d KiB", grew>>10)
	if grew > 32<<20 {
		t.Fatalf("gateway heap grew %d MiB", grew>>20)
	}
}

// TestE2EStandardRFC9449ClientThroughDPoPRequiredGateway (issue 12 item 1):
// a client that builds plain RFC 9449 proofs with go-jose — jti, htm, htu,
// iat, ath, and no content_digest, as the current MCP DPoP profile has it —
// calls through a `dpop: required` gateway with a DPoP-bound token from
// oidc-provider. With `dpop_content_digest: required` the same proof is
// refused.
func TestE2EStandardRFC9449ClientThroughDPoPRequiredGateway(t *testing.T) {
	op := StartOP(t, "plain")
	up := startEverythingHTTP(t, "streamableHttp")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	standardProof := func(htu, tok string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		jti := make([]byte, 12)
		rand.Read(jti)
		c := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(jti), "htm": "POST", "htu": htu, "iat": time.Now().Unix()}
		if tok != "" {
			c["ath"] = dpop.ATH(tok)
		}
		b, _ := json.Marshal(c)
		jws, err := signer.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}
	for _, tc := range []struct {
		name string
		cfg  string
		want int
	}{
		{"optional digest", "", 200},
		{"required digest", "    dpop_content_digest: required\n", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := FreePort(t)
			dir := t.TempDir()
			cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nissuers:\n  - issuer: %s\nupstreams:\n  - url: %s\n    dpop: required\n%s", port, op.Issuer, up, tc.cfg)
			file := filepath.Join(dir, "gateway.yaml")
			os.WriteFile(file, []byte(cfg), 0o600)
			p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
			gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
			gw.WaitReady(t)
			mcpURL := gw.Endpoint("/mcp")
			tok, typ := op.ClientCredentials(t, "mcp-cc", "cc-secret", mcpURL, "mcp:read", func(r *http.Request) {
				r.Header.Set("DPoP", standardProof(r.URL.String(), ""))
			})
			if !strings.EqualFold(typ, "DPoP") {
				t.Fatalf("token_type %q", typ)
			}
			status, hdr, body := postHeaders(t, mcpURL, initialize, http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {standardProof(mcpURL, tok)}})
			if status != tc.want {
				t.Fatalf("standard proof: %d %v %s, want %d", status, hdr.Values("WWW-Authenticate"), body, tc.want)
			}
			if tc.want == 401 && !strings.Contains(strings.Join(hdr.Values("WWW-Authenticate"), " "), "content_digest") {
				t.Fatalf("refusal does not name content_digest: %v", hdr.Values("WWW-Authenticate"))
			}
		})
	}
}
