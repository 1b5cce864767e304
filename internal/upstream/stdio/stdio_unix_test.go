//go:build unix

package stdio

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

type logBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func dial(t *testing.T, o Options) upstream.Conn {
	t.Helper()
	c, err := Dialer(o)(context.Background(), upstream.Caller{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestChildExitWithOrphanHoldingStdout: the child exits while a process it
// started in a session of its own (out of reach of the group kill) keeps
// stdout open. Recv must report the exit within the grace period, not when
// the orphan ends.
func TestChildExitWithOrphanHoldingStdout(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatal("setsid (util-linux) is needed to start an escaping orphan:", err)
	}
	pidFile := t.TempDir() + "/pid"
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	c := dial(t, Options{Command: []string{"/bin/sh", "-c", `setsid sh -c 'echo $$ > "$1"; exec sleep 30' sh "$1" & while [ ! -s "$1" ]; do sleep 0.05; done; echo '{"jsonrpc":"2.0","method":"hello"}'; read line; exit 3`, "sh", pidFile},
		ShutdownGrace: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := c.Recv(ctx)
	if err != nil || !strings.Contains(string(msg), "hello") {
		t.Fatalf("first message: %q %v", msg, err)
	}
	if err := c.Send(ctx, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Recv(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Recv after the child exited: %v (context %v)", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error does not carry the exit: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Recv took %v", d)
	}
	if b, _ := os.ReadFile(pidFile); len(b) == 0 {
		t.Fatal("the orphan did not start, so the test proved nothing")
	}
}

// TestNoShellEnvAndStderr: argv goes to the program unexpanded (no shell),
// the environment is exactly the configured one, and stderr lines reach the
// log.
func TestNoShellEnvAndStderr(t *testing.T) {
	var logs logBuf
	c := dial(t, Options{
		Command: []string{"/bin/sh", "-c", `printf '{"jsonrpc":"2.0","method":"m","params":{"arg":"%s","env":"%s","home":"%s"}}\n' "$1" "$ONLY" "$HOME"; echo "to stderr" >&2; read x`, "sh", "$HOME;rm -rf /"},
		Env:     []string{"ONLY=set", "PATH=" + os.Getenv("PATH")},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := c.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg), `"arg":"$HOME;rm -rf /"`) || !strings.Contains(string(msg), `"env":"set"`) || !strings.Contains(string(msg), `"home":""`) {
		t.Fatalf("argv expanded or environment leaked: %s", msg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "to stderr") {
		if time.Now().After(deadline) {
			t.Fatalf("stderr not logged: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeftoversOfAnExitedChildAreEnded: a process the child left in its
// group does not outlive the child.
func TestLeftoversOfAnExitedChildAreEnded(t *testing.T) {
	dir := t.TempDir()
	pidFile := dir + "/pid"
	c := dial(t, Options{Command: []string{"/bin/sh", "-c", `sleep 30 >/dev/null 2>&1 </dev/null & echo $! > "$1"; exit 0`, "sh", pidFile}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Recv(ctx); err == nil {
		t.Fatal("Recv after exit returned a message")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the child's leftover process %d is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
