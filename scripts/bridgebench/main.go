// Command bridgebench measures `mcpgate connect` (the stdio bridge): the
// latency it adds per call compared with a direct HTTP client (and, when
// its path is given, mcp-remote's), the cold start to the first answered
// request with a stored token, and the idle memory of the process.
//
//	go run ./scripts/bridgebench -mcpgate bin/mcpgate [-mcp-remote e2e/node_modules/mcp-remote/dist/proxy.js] [-n 2000]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/vault"
)

const token = "bench-token"

// server is a minimal session-era MCP endpoint: constant cost per call, so
// that differences come from the client side. It requires the bearer token.
func server() (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(401)
			return
		}
		if r.Method != http.MethodPost {
			w.WriteHeader(405)
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &m)
		switch {
		case m.Method == "server/discover":
			w.WriteHeader(400)
		case m.ID == nil:
			w.WriteHeader(202)
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "bench")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"bench","version":"1"}}}`, m.ID)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"pong"}]}}`, m.ID)
		}
	})
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/mcp", func() { srv.Close() }
}

const initMsg = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`

func call(id int) string {
	return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":{"name":"ping","arguments":{}}}`
}

// direct: one keep-alive HTTP client posting the same calls.
func direct(url string, n int) []time.Duration {
	c := &http.Client{}
	post := func(body string, sid string) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := c.Do(req)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post(initMsg, "")
	out := make([]time.Duration, 0, n)
	for i := range n {
		t := time.Now()
		post(call(i+1), "bench")
		out = append(out, time.Since(t))
	}
	return out
}

// startBridge starts argv with pipes and returns when it was started.
func startBridge(argv, env []string) (*exec.Cmd, io.WriteCloser, io.Reader, time.Time) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	return cmd, stdin, stdout, start
}

// stdioBridge runs argv as a stdio bridge and times n sequential calls.
func stdioBridge(argv, env []string, n int) (lat []time.Duration, cold time.Duration, rssKB int) {
	cmd, stdin, stdout, start := startBridge(argv, env)
	defer func() { stdin.Close(); cmd.Wait() }()
	r := bufio.NewReaderSize(stdout, 1<<20)
	roundTrip := func(msg string) {
		io.WriteString(stdin, msg+"\n")
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				panic(fmt.Sprintf("%v: bridge closed: %v", argv, err))
			}
			if bytes.Contains(line, []byte(`"id"`)) && !bytes.Contains(line, []byte(`"method"`)) {
				if bytes.Contains(line, []byte(`"error"`)) {
					panic(fmt.Sprintf("%v: %s", argv, line))
				}
				return
			}
		}
	}
	roundTrip(initMsg)
	cold = time.Since(start)
	io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n")
	for i := range 50 { // warm-up
		roundTrip(call(100000 + i))
	}
	lat = make([]time.Duration, 0, n)
	for i := range n {
		t := time.Now()
		roundTrip(call(i + 1))
		lat = append(lat, time.Since(t))
	}
	time.Sleep(5 * time.Second) // idle
	rssKB, detail := rssParts(cmd.Process.Pid)
	fmt.Printf("idle RSS of %s: %d KiB (%s)\n", filepath.Base(argv[0]), rssKB, detail)
	return lat, cold, rssKB
}

// stdioBridgeCold times only the start to the first answer.
func stdioBridgeCold(argv, env []string, _ int) ([]time.Duration, time.Duration, int) {
	cmd, stdin, stdout, start := startBridge(argv, env)
	io.WriteString(stdin, initMsg+"\n")
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	cold := time.Since(start)
	if err != nil || !bytes.Contains(line, []byte(`"result"`)) {
		panic(fmt.Sprintf("cold start: %v %s", err, line))
	}
	stdin.Close()
	cmd.Wait()
	return nil, cold, 0
}

// rssParts returns the process's resident set in KiB, and its split into
// anonymous memory and file-backed pages (the binary).
func rssParts(pid int) (total int, detail string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, ""
	}
	field := func(name string) int {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, name+":") {
				n, _ := strconv.Atoi(strings.Fields(l)[1])
				return n
			}
		}
		return -1
	}
	return field("VmRSS"), fmt.Sprintf("anonymous %d KiB, file-backed %d KiB", field("RssAnon"), field("RssFile"))
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func main() {
	bin := flag.String("mcpgate", "bin/mcpgate", "mcpgate binary")
	remote := flag.String("mcp-remote", "", "mcp-remote's proxy.js (optional, needs node)")
	n := flag.Int("n", 2000, "calls per client")
	colds := flag.Int("cold", 20, "cold starts to time")
	flag.Parse()
	url, stop := server()
	defer stop()

	// a stored token for the bridge (file store in a private dir)
	dir, _ := os.MkdirTemp("", "bridgebench")
	defer os.RemoveAll(dir)
	store, err := vault.OpenFile(dir, "")
	if err != nil {
		panic(err)
	}
	rec := oauth.Record{Profile: "default", Server: url, Resource: url, Issuer: "http://127.0.0.1:1", Client: oauth.Client{ID: "bench"},
		Token: oauth.Token{AccessToken: token, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}}
	raw, _ := json.Marshal(rec)
	key := oauth.TokenKey("default", rec.Issuer, "bench", url)
	store.Put(key, raw)
	store.Put(oauth.ServerKey("default", url), []byte(key))
	env := []string{"MCPGATE_CONFIG_DIR=" + dir}
	abs, _ := filepath.Abs(*bin)

	d := direct(url, *n)
	b, _, mem := stdioBridge([]string{abs, "connect", "--store", "file", url}, env, *n)
	var coldRuns []time.Duration
	for range *colds {
		_, c, _ := stdioBridgeCold([]string{abs, "connect", "--store", "file", url}, env, 0)
		coldRuns = append(coldRuns, c)
	}
	fmt.Printf("calls per client: %d (sequential, one in flight), loopback\n\n", *n)
	fmt.Printf("%-22s %10s %10s %10s\n", "client", "p50", "p90", "p99")
	row := func(name string, l []time.Duration) {
		fmt.Printf("%-22s %10s %10s %10s\n", name, pct(l, .5).Round(time.Microsecond), pct(l, .9).Round(time.Microsecond), pct(l, .99).Round(time.Microsecond))
	}
	row("direct HTTP (Go)", d)
	row("mcpgate connect", b)
	fmt.Printf("\nadded by mcpgate connect: p50 %s\n", (pct(b, .5) - pct(d, .5)).Round(time.Microsecond))
	if *remote != "" {
		r, _, rmem := stdioBridge([]string{"node", *remote, url, "--transport", "http-only", "--header", "Authorization:Bearer " + token},
			[]string{"MCP_REMOTE_CONFIG_DIR=" + dir}, *n)
		row("mcp-remote", r)
		fmt.Printf("added by mcp-remote: p50 %s; idle RSS %d KiB\n", (pct(r, .5) - pct(d, .5)).Round(time.Microsecond), rmem)
	}
	fmt.Printf("cold start to the first answer (stored token, %d runs): p50 %s, max %s\n", *colds,
		pct(coldRuns, .5).Round(100*time.Microsecond), pct(coldRuns, 1).Round(100*time.Microsecond))
	fmt.Printf("idle RSS of mcpgate connect after %d calls: %d KiB\n", *n, mem)
}
