package testutil

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisBinary is Debian's redis-server (scripts/deps.sh installs it).
const RedisBinary = "/usr/bin/redis-server"

// Redis is a real redis-server on a loopback port, without persistence,
// stopped with the test. Stop and Start simulate an outage and a restart
// with empty state on the same port.
type Redis struct {
	t    testing.TB
	Port int
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server with extra arguments (for example
// "--requirepass", pw). It fails the test when the binary is missing.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	if _, err := os.Stat(RedisBinary); err != nil {
		t.Fatalf("%s not found: run scripts/deps.sh (Debian package redis-server)", RedisBinary)
	}
	r := &Redis{t: t, Port: freePort(t), args: extra}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// URL is redis://127.0.0.1:port.
func (r *Redis) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(r.Port) }

// Addr is 127.0.0.1:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// Start (re)starts the server, empty, and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	argv := append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.t.TempDir(), "--loglevel", "warning"}, r.args...)
	cmd := exec.Command(RedisBinary, argv...)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	r.cmd = cmd
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if r.answers() {
			return
		}
	}
	r.t.Fatalf("redis-server on port %d did not answer within 10s", r.Port)
}

// answers reports whether the port speaks RESP (PING answered, also with
// -NOAUTH when a password is required).
func (r *Redis) answers() bool {
	c, err := net.DialTimeout("tcp", r.Addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// Stop kills the server (its state is lost) and waits for it to exit.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies too
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// CPU is the CPU time the running server has used (user + system, from
// /proc), for benchmarks that charge Redis's work to the requests.
func (r *Redis) CPU() time.Duration {
	if r.cmd == nil {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(r.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// fields after the parenthesised command name: utime is the 14th field
	// of the line, stime the 15th, in clock ticks (100 per second on Linux)
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// Pause stops the server process (SIGSTOP): connections stay open and
// nothing answers, so clients hit their timeouts. Resume continues it.
func (r *Redis) Pause() { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }
