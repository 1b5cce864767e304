package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// The yardstick is the standard library's httputil.ReverseProxy alone in
// front of the same upstream: no authentication, policy, session binding
// or limits. The same scenario run against it, side by side with the
// gateway, says how much of a figure is the gateway's own and how much is
// Go's HTTP stack, loopback and this machine. It runs as a process of its
// own (-yardstick-server UPSTREAM) so that it is measured exactly as the
// gateway is; it serves /readyz and a /metrics with go_goroutines and the
// heap and stack gauges on its listener.
func serveYardstick(upstream string) {
	target, err := url.Parse(upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.URL.Path = target.Path },
		FlushInterval: -1, // SSE: flush each write, as the gateway does
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\n",
			runtime.NumGoroutine(), m.HeapInuse, m.StackInuse)
	})
	mux.Handle("/", rp)
	fmt.Println(ln.Addr().String())
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	srv.Serve(ln)
}

// startYardstick runs the yardstick child and returns it as a gateway
// (same sampling: pid, /metrics).
func startYardstick(self, upstream string) (*gateway, error) {
	cmd := exec.Command(self, "-yardstick-server", upstream)
	stdin, _ := cmd.StdinPipe()
	_ = stdin // closed when the generator exits: the child follows
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("yardstick child: %w", err)
	}
	addr := strings.TrimSpace(line)
	return &gateway{cmd: cmd, pid: cmd.Process.Pid, url: "http://" + addr, metricsURL: "http://" + addr + "/metrics"}, nil
}
