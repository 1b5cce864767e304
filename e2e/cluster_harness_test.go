//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cluster bench (issue 14, "How it must be proven"): N replicas of
// `mcpgate serve` sharing one configuration — one public URL (the load
// balancer's), state in a redis-server, the built-in authorization server
// on PostgreSQL, one DPoP nonce key, one replica hop secret — behind
// HAProxy (Debian's), round robin without affinity, health-checked on
// /readyz. Every process is started by the test on loopback.

// ClusterOptions configures StartCluster; the zero value is three
// replicas with generous rate limits.
type ClusterOptions struct {
	// Replicas is the number of gateways (default 3).
	Replicas int
	// Limits is the YAML of the limits: section (indented by two spaces);
	// default a rate limit no test reaches (200/s, burst 400 per subject).
	Limits string
	// Workers is the number of client-credentials clients machine-0 …
	// machine-(Workers-1), one subject each (default 8).
	Workers int
	// LeaseTTL is state.redis.lease_ttl (default: the gateway's, 30s).
	LeaseTTL string
}

// Cluster is a running cluster bench.
type Cluster struct {
	LB       string // the load balancer's URL: every replica's public_url
	Redis    *RedisServer
	DSN      string // PostgreSQL of the built-in authorization server
	Replicas []*Replica
	HAProxy  *Proc
	stats    string // HAProxy's stats page (CSV)
	dir      string
	env      []string
}

// Replica is one `mcpgate serve` of the cluster.
type Replica struct {
	Index   int
	URL     string // direct, bypassing the load balancer
	Port    int
	Audit   string // its audit log (JSON lines; kept across restarts)
	cfgFile string
	Proc    *Proc
}

// The cluster's upstreams: server-everything over Streamable HTTP at
// HTTPPath, and as a stdio child (one per session) at StdioPath.
const (
	HTTPPath  = "/mcp"
	StdioPath = "/stdio/mcp"
	// MachineSecret is the client secret of every machine-N client.
	MachineSecret = "cluster-machine-secret"
)

// StartCluster starts Redis, PostgreSQL, the two upstreams, the replicas
// and HAProxy, and returns when HAProxy sees every replica ready.
func StartCluster(t *testing.T, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	if opts.Workers == 0 {
		opts.Workers = 8
	}
	if opts.Limits == "" {
		opts.Limits = "  requests_per_second: 200\n  burst: 400\n"
	}
	c := &Cluster{dir: t.TempDir(), Redis: StartRedisServer(t), DSN: StartPostgres(t)}
	lbPort, statsPort := FreePort(t), FreePort(t)
	c.LB, c.stats = fmt.Sprintf("http://127.0.0.1:%d", lbPort), fmt.Sprintf("http://127.0.0.1:%d/stats;csv", statsPort)
	c.env = []string{"AS_DSN=" + c.DSN, "MACHINE_SECRET=" + MachineSecret}
	for i := range opts.Replicas {
		port := FreePort(t)
		c.Replicas = append(c.Replicas, &Replica{Index: i, Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port),
			Audit: filepath.Join(c.dir, fmt.Sprintf("audit-%d.jsonl", i))})
	}
	c.writeConfigs(t, opts, startEverythingHTTP(t, "streamableHttp"))
	// the proxy first: the replicas load their issuer keys through it
	c.HAProxy = startHAProxy(t, c.dir, lbPort, statsPort, c.Replicas)
	for _, r := range c.Replicas {
		c.startReplica(t, r)
	}
	for i := range c.Replicas {
		c.WaitBalanced(t, i, true)
	}
	return c
}

// writeConfigs writes one configuration file per replica: identical but
// for listen, audit.file and state.replica.advertise_url.
func (c *Cluster) writeConfigs(t *testing.T, opts ClusterOptions, httpUpstream string) {
	nonceKey := writeSecret(t, c.dir, "dpop-nonce.key", "cluster-dpop-nonce-key-0123456789abcdef")
	hopKey := writeSecret(t, c.dir, "replica.key", "cluster-replica-hop-secret-0123456789abcdef")
	users := writeUsers(t, c.dir)
	var clients strings.Builder
	for i := range opts.Workers {
		fmt.Fprintf(&clients, "    - id: machine-%d\n      secret_env: MACHINE_SECRET\n      grant_types: [client_credentials]\n      scopes: [mcp:read]\n", i)
	}
	clients.WriteString("    - id: dpop-machine\n      secret_env: MACHINE_SECRET\n      grant_types: [client_credentials]\n      scopes: [mcp:read]\n      dpop_bound_access_tokens: true\n")
	hosts := []string{strings.TrimPrefix(c.LB, "http://")}
	for _, r := range c.Replicas {
		hosts = append(hosts, strings.TrimPrefix(r.URL, "http://"))
	}
	everything := Module(t, "@modelcontextprotocol/server-everything/dist/index.js")
	for _, r := range c.Replicas {
		replica := fmt.Sprintf("  replica:\n    advertise_url: %s\n    secret_file: %s\n", r.URL, hopKey)
		if opts.LeaseTTL != "" {
			replica = "    lease_ttl: " + opts.LeaseTTL + "\n" + replica
		}
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
allowed_hosts: [%s]
authorization_server: builtin
builtin:
  store_env: AS_DSN
  users_file: %s
  clients:
%sdpop_nonces:
  key_file: %s
state:
  redis:
    url: %s
%sshutdown_drain: 2s
audit:
  file: %s
upstreams:
  - path: %s
    url: %s
    scopes_supported: [mcp:read]
    dpop: optional
    dpop_nonce: true
  - path: %s
    command: [node, %s, stdio]
    scopes_supported: [mcp:read]
limits:
%s`, r.Port, c.LB, strings.Join(hosts, ", "), users, clients.String(), nonceKey, c.Redis.URL, replica, r.Audit,
			HTTPPath, httpUpstream, StdioPath, everything, opts.Limits)
		r.cfgFile = filepath.Join(c.dir, fmt.Sprintf("replica-%d.yaml", r.Index))
		if err := os.WriteFile(r.cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func writeSecret(t *testing.T, dir, name, value string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startReplica (re)starts replica r on its port and waits for /readyz.
func (c *Cluster) startReplica(t *testing.T, r *Replica) {
	t.Helper()
	env := append([]string{"MCPGATE_CONFIG_DIR=" + filepath.Join(c.dir, fmt.Sprint("cfg", r.Index))}, c.env...)
	r.Proc, _ = Start(t, fmt.Sprintf("mcpgate-replica-%d", r.Index), []string{Mcpgate(t), "serve", "--config", r.cfgFile}, env,
		regexp.MustCompile(`mcpgate serving`))
	(&Gateway{URL: r.URL}).WaitReady(t)
}

// Kill ends replica i with SIGKILL (its process group: stdio children
// too), as a crashed node would, and waits until it is gone.
func (c *Cluster) Kill(t *testing.T, i int) {
	t.Helper()
	p := c.Replicas[i].Proc
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if err := p.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// Terminate sends SIGTERM to replica i (a rolling upgrade) and waits for
// it to exit after its drain; it must exit 0.
func (c *Cluster) Terminate(t *testing.T, i int) {
	t.Helper()
	p := c.Replicas[i].Proc
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("replica %d exited %d after SIGTERM, want 0", i, code)
	}
}

// Restart starts replica i again (same port, configuration and audit log)
// and waits until HAProxy balances to it.
func (c *Cluster) Restart(t *testing.T, i int) {
	t.Helper()
	c.startReplica(t, c.Replicas[i])
	c.WaitBalanced(t, i, true)
}

// WaitBalanced waits until HAProxy's health check has replica i UP (or,
// up false, DOWN).
func (c *Cluster) WaitBalanced(t *testing.T, i int, up bool) {
	t.Helper()
	want := map[bool]string{true: "UP", false: "DOWN"}[up]
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if last = c.serverStatus(i); last == want {
			return
		}
	}
	t.Fatalf("HAProxy: replica %d is %q, want %s", i, last, want)
}

// serverStatus is HAProxy's status of replica i (UP, DOWN, …).
func (c *Cluster) serverStatus(i int) string {
	resp, err := http.Get(c.stats)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var status int
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if strings.HasPrefix(sc.Text(), "# ") {
			for j, name := range f {
				if name == "status" {
					status = j
				}
			}
			continue
		}
		if len(f) > status && f[0] == "replicas" && f[1] == fmt.Sprint("r", i) {
			return f[status]
		}
	}
	return "unknown"
}

// startHAProxy runs Debian's HAProxy in the foreground: round robin, no
// affinity, /readyz checked every 200ms (one failure takes a replica out,
// one success puts it back), and a refused or failed connection retried
// on another replica (retry-on conn-failure with redispatch). A request
// that reached a replica is never sent again: POSTs are not idempotent.
//
// Nothing special for /jwks: a replica reads the built-in issuer's keys
// from its own authorization server in-process (gateway/localkeys.go).
// It used to fetch public_url/jwks through this proxy, which sends only
// to ready replicas, and no replica of a cold cluster ever became ready.
func startHAProxy(t *testing.T, dir string, port, statsPort int, replicas []*Replica) *Proc {
	if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
		t.Fatal("HAProxy is missing: scripts/deps.sh installs the haproxy package")
	}
	var servers strings.Builder
	for _, r := range replicas {
		fmt.Fprintf(&servers, "  server r%d 127.0.0.1:%d check\n", r.Index, r.Port)
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`global
  maxconn 4096
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 5s
  retries 3
  option redispatch 1
  retry-on conn-failure
frontend mcp
  bind 127.0.0.1:%[1]d
  capture request header X-Load-Call len 40
  default_backend replicas
frontend stats
  bind 127.0.0.1:%[2]d
  stats enable
  stats uri /stats
backend replicas
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host %[3]s
  http-check expect status 200
  default-server inter 200ms fastinter 100ms downinter 200ms fall 1 rise 1
%[4]s`, port, statsPort, host, servers.String())
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := execOutput("/usr/sbin/haproxy", "-c", "-f", file); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	p, _ := Start(t, "haproxy", []string{"/usr/sbin/haproxy", "-db", "-f", file}, nil, nil)
	WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/stats", statsPort))
	return p
}

// RedisServer is a redis-server on a free loopback port without
// persistence; Stop and Start simulate an outage and a restart with empty
// state on the same port.
type RedisServer struct {
	URL  string
	Port int
	Proc *Proc
	t    *testing.T
}

// StartRedisServer starts Debian's redis-server.
func StartRedisServer(t *testing.T) *RedisServer {
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		t.Fatal("redis-server is missing: scripts/deps.sh installs the redis-server package")
	}
	r := &RedisServer{Port: FreePort(t), t: t}
	r.URL = fmt.Sprintf("redis://127.0.0.1:%d", r.Port)
	r.Start()
	return r
}

// Start (re)starts the server, empty.
func (r *RedisServer) Start() {
	r.Proc, _ = Start(r.t, "redis-server", []string{"redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
		"--port", strconv.Itoa(r.Port)}, nil, regexp.MustCompile(`Ready to accept connections`))
}

// Stop ends the server (SIGTERM, then SIGKILL).
func (r *RedisServer) Stop() { r.Proc.Stop() }

// AuditRecord is one line of a replica's audit log (the fields the
// cluster tests read).
type AuditRecord struct {
	Time     time.Time `json:"time"`
	Subject  string    `json:"subject"`
	ClientID string    `json:"client_id"`
	Method   string    `json:"method"`
	Name     string    `json:"name"`
	Decision string    `json:"decision"`
	Reason   string    `json:"reason"`
	Status   int       `json:"status"`
}

// AuditLog reads replica i's audit log (every run of it).
func (c *Cluster) AuditLog(t *testing.T, i int) []AuditRecord {
	t.Helper()
	b, err := os.ReadFile(c.Replicas[i].Audit)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []AuditRecord
	for _, l := range strings.Split(string(b), "\n") {
		var rec AuditRecord
		if l != "" && json.Unmarshal([]byte(l), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// ServedBy lists the replicas whose audit log has an allowed record that
// match accepts.
func (c *Cluster) ServedBy(t *testing.T, match func(AuditRecord) bool) []int {
	var out []int
	for i := range c.Replicas {
		for _, rec := range c.AuditLog(t, i) {
			if rec.Decision == "allow" && match(rec) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// Token is a client-credentials access token of machine-n for path,
// obtained through the load balancer (the built-in server on PostgreSQL:
// any replica may issue it).
func (c *Cluster) Token(t *testing.T, n int, path string) string {
	t.Helper()
	tok, _ := (&OP{Issuer: c.LB}).ClientCredentials(t, fmt.Sprint("machine-", n), MachineSecret, c.LB+path, "mcp:read", nil)
	return tok
}

// Host is the public host every request carries, also one sent straight
// to a replica.
func (c *Cluster) Host() string { return strings.TrimPrefix(c.LB, "http://") }

// LBEntry is HAProxy's log of one request: the replica it went to last
// (r0, r1, …, or <NOSRV>), the status it answered, its termination state
// (four characters, "----" for a normal end; "SH--": the server aborted
// before its headers) and its retries ("+1": redispatched once).
type LBEntry struct {
	Server, Term, Retries string
	Status                int
}

// httplog: … backend/server Tr/Tw/Tc/Tr/Ta status bytes - - term conns retries queue {captured} "request"
var lbLogLine = regexp.MustCompile(`\] \S+ replicas/(\S+) \S+ (-?\d+) \S+ \S+ \S+ (\S{4}) \S+/\S+/\S+/\S+/(\S+) \S+ \{([^}]*)\}`)

// LBLog reads HAProxy's log: the entry of each request that carried an
// X-Load-Call header, by its value.
func (c *Cluster) LBLog() map[string]LBEntry {
	out := map[string]LBEntry{}
	for _, l := range strings.Split(c.HAProxy.Output(), "\n") {
		m := lbLogLine.FindStringSubmatch(l)
		if m == nil || m[5] == "" {
			continue
		}
		st, _ := strconv.Atoi(m[2])
		out[m[5]] = LBEntry{Server: m[1], Status: st, Term: m[3], Retries: m[4]}
	}
	return out
}
