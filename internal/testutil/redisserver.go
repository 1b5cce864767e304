package testutil

import (
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// RedisServer is a redis-server process (Debian's) started for one test on
// a free loopback port, with persistence off.
type RedisServer struct {
	Addr string
	bin  string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server or skips the test when it is not
// installed (scripts/deps.sh installs it). It is stopped at cleanup.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (scripts/deps.sh)")
	}
	port := freePort(t)
	s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), bin: bin}
	s.start(t)
	t.Cleanup(s.Stop)
	return s
}

func (s *RedisServer) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command(s.bin, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", port)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", s.Addr); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("redis-server did not start")
}

// Restart starts a stopped server again on the same address, empty (as a
// Redis restarted without persistence).
func (s *RedisServer) Restart(t testing.TB) {
	s.Stop()
	s.start(t)
}

// URL is the redis:// URL of the server.
func (s *RedisServer) URL() string { return "redis://" + s.Addr }

// Stop ends the server (idempotent): tests of "Redis down" call it.
func (s *RedisServer) Stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// freePort picks a free port below the kernel's ephemeral range (as
// e2e.FreePort does): a port from :0 is the kind the kernel hands to the
// next outgoing connection, and the server started on it finds it taken.
func freePort(t testing.TB) int {
	for range 200 {
		p := 20000 + rand.IntN(12000)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			_ = l.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}
