package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

func selfSigned(t *testing.T) (certFile, keyFile string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestTLSListenerAndMinimumVersion(t *testing.T) {
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	cert, key := selfSigned(t)
	cfg := baseConfig(ln.Addr().String(), idp, up.srv.URL)
	cfg.TLS = config.TLS{CertFile: cert, KeyFile: key, MinVersion: "1.3"}
	cfg.PublicURL = ""
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "https://"+ln.Addr().String() {
		t.Fatalf("public URL with TLS: %s", cfg.PublicURL)
	}
	gw, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(context.Background(), ln)
	defer gw.Shutdown(context.Background())
	client := func(maxV uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: maxV}}}
	}
	resp, err := client(tls.VersionTLS13).Get(cfg.PublicURL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("TLS 1.3 healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	if _, err := client(tls.VersionTLS12).Get(cfg.PublicURL + "/healthz"); err == nil {
		t.Fatal("TLS 1.2 accepted with min_version 1.3")
	}
}

func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	g := &Gateway{}
	var err error
	if g.proxies, err = parseProxies([]string{"10.0.0.0/8", "192.168.1.1"}); err != nil {
		t.Fatal(err)
	}
	rows := []struct{ peer, xff, want string }{
		{"203.0.113.9:1234", "1.2.3.4", "203.0.113.9"},                // untrusted peer: header ignored
		{"10.1.2.3:1234", "1.2.3.4", "1.2.3.4"},                       // trusted proxy
		{"10.1.2.3:1234", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"}, // spoofed left part ignored
		{"10.1.2.3:1234", "", "10.1.2.3"},
	}
	for _, r := range rows {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = r.peer
		if r.xff != "" {
			req.Header.Set("X-Forwarded-For", r.xff)
		}
		if got := g.remoteAddr(req); got != r.want {
			t.Errorf("peer %s xff %q: %s, want %s", r.peer, r.xff, got, r.want)
		}
	}
	if _, err := parseProxies([]string{"not-an-ip"}); err == nil {
		t.Fatal("bad proxy accepted")
	}
}

func TestPublicURLDrivesMetadataBehindALoadBalancer(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.PublicURL = "https://mcp.example.com"
		c.AllowedHosts = []string{"mcp.example.com"}
		c.Upstreams[0].Resource = ""
	})
	r := tg.do(t, "GET", "/.well-known/oauth-protected-resource/mcp", "", map[string]string{"Host": "mcp.example.com", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
	if r.status != 200 || !contains(string(r.body), `"resource": "https://mcp.example.com/mcp"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = tg.do(t, "POST", "/mcp", listBody, map[string]string{"Host": "mcp.example.com", "X-Forwarded-Host": "evil.example"})
	if ch := r.header.Get("WWW-Authenticate"); !contains(ch, `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`) {
		t.Fatalf("challenge %q", ch)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
