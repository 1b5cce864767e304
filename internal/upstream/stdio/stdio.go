// Package stdio runs an MCP server as a child process per session and
// speaks newline-delimited JSON-RPC with it (MCP stdio transport). The
// child is started without a shell, in its own process group, with only the
// environment it is given; its stderr goes to the log. Close performs the
// MCP stdio shutdown: close stdin, wait; SIGTERM, wait; SIGKILL.
package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Counter counts live children (a metrics gauge).
type Counter interface{ Add(delta int) }

// Options configure the child processes.
type Options struct {
	// Command is argv; Command[0] is looked up in PATH.
	Command []string
	// Env is the child's complete environment ("K=V").
	Env []string
	Dir string
	// Logger receives the child's stderr, line by line.
	Logger *slog.Logger
	// ShutdownGrace is the wait after closing stdin and after SIGTERM.
	// Default 2s.
	ShutdownGrace time.Duration
	// MaxMessageBytes bounds one line from the child. Default 4 MiB.
	MaxMessageBytes int
	Children        Counter
}

// ErrClosed is returned by Send and Recv after Close.
var ErrClosed = errors.New("stdio: connection closed")

// Dialer starts one child per dial.
func Dialer(o Options) upstream.Dialer {
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 2 * time.Second
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(_ context.Context, c upstream.Caller) (upstream.Conn, error) {
		oc := o
		// the caller's entries come last: exec uses the last value of a
		// duplicated name, so configuration cannot shadow them (config
		// validation refuses such names anyway)
		oc.Env = append(slices.Clip(o.Env), c.Env...)
		return start(oc)
	}
}

type conn struct {
	o     Options
	cmd   *exec.Cmd
	stdin io.WriteCloser
	msgs  chan []byte
	done  chan struct{} // closed when the process has been reaped
	stop  chan struct{} // closed by Close: nobody reads msgs any more

	wmu sync.Mutex // serialises writes to stdin

	mu       sync.Mutex // guards exitErr, closed
	exitErr  error
	closed   bool
	closeRun sync.Once
}

func start(o Options) (*conn, error) {
	if len(o.Command) == 0 {
		return nil, errors.New("stdio: empty command")
	}
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Env = o.Env
	cmd.Dir = o.Dir
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipes, not StdoutPipe: Wait then returns when the child
	// exits, even if a process it started still holds the write ends, and
	// the reaper decides how long to wait for the rest of the output.
	stdout, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, errW, err := os.Pipe()
	if err != nil {
		stdout.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("stdio: start %s: %w", o.Command[0], err)
	}
	if o.Children != nil {
		o.Children.Add(1)
	}
	c := &conn{o: o, cmd: cmd, stdin: stdin, msgs: make(chan []byte, 64), done: make(chan struct{}), stop: make(chan struct{})}
	log := o.Logger.With("pid", cmd.Process.Pid)
	pipesDone := make(chan struct{})
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			log.Info("upstream stderr", "line", sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		defer pipes.Done()
		c.read(stdout, log)
	}()
	go func() {
		pipes.Wait()
		close(pipesDone)
	}()
	go func() {
		err := cmd.Wait()
		// The child is gone. Processes it started and left behind in its
		// group are ended with it (a session leaves no process behind);
		// its output normally ends then. If one escaped the group and
		// holds the pipes, give the output a moment, then close our ends
		// so that no caller waits on them.
		killGroup(cmd)
		select {
		case <-pipesDone:
		case <-time.After(o.ShutdownGrace):
			log.Warn("the upstream process exited but a process it started still holds its output; closing it")
			stdout.Close()
			stderr.Close()
			<-pipesDone
		}
		stdout.Close()
		stderr.Close()
		c.mu.Lock()
		if err == nil {
			err = errors.New("the upstream process exited")
		} else {
			err = fmt.Errorf("the upstream process ended: %w", err)
		}
		c.exitErr = err
		c.mu.Unlock()
		if o.Children != nil {
			o.Children.Add(-1)
		}
		close(c.done)
	}()
	return c, nil
}

// read delivers each stdout line that is JSON; other lines are logged and
// skipped. An overlong line ends the session.
func (c *conn) read(stdout io.Reader, log *slog.Logger) {
	defer close(c.msgs)
	r := bufio.NewReaderSize(stdout, 64<<10)
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > c.o.MaxMessageBytes {
				log.Error("upstream wrote a message larger than the limit; ending the session", "limit", c.o.MaxMessageBytes)
				c.kill()
				_, _ = io.Copy(io.Discard, r)
				return
			}
			continue
		}
		if len(line) > 0 {
			msg := bytes.TrimSpace(line)
			if len(msg) > 0 {
				if json.Valid(msg) {
					select {
					case c.msgs <- append([]byte(nil), msg...):
					case <-c.stop:
						_, _ = io.Copy(io.Discard, r)
						return
					}
				} else {
					log.Warn("upstream wrote a line that is not JSON; skipped", "bytes", len(msg))
				}
			}
		}
		line = line[:0]
		if err != nil {
			return
		}
	}
}

// Send writes one message as a single line.
func (c *conn) Send(ctx context.Context, msg []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, msg); err != nil {
		return fmt.Errorf("stdio: message is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-c.done:
		return c.err()
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.stdin.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("stdio: write to the upstream process: %w", err)
	}
	return nil
}

// Recv returns the next message from the child.
func (c *conn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m, ok := <-c.msgs:
		if !ok {
			<-c.done
			return nil, c.err()
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.exitErr != nil {
		return c.exitErr
	}
	return io.EOF
}

// Close shuts the child down per the MCP stdio rules and reaps it.
func (c *conn) Close() error {
	c.closeRun.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		// Not under wmu: closing the pipe unblocks a writer stuck on a
		// child that stopped reading.
		_ = c.stdin.Close()
		if c.wait(c.o.ShutdownGrace) {
			return
		}
		terminateGroup(c.cmd)
		if c.wait(c.o.ShutdownGrace) {
			return
		}
		c.kill()
		<-c.done
	})
	<-c.done
	return nil
}

func (c *conn) kill() { killGroup(c.cmd) }

func (c *conn) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// PID returns the child's process id (for tests and logs).
func PID(c upstream.Conn) int {
	if u, ok := c.(interface{ Unwrap() upstream.Conn }); ok {
		c = u.Unwrap()
	}
	if sc, ok := c.(*conn); ok {
		return sc.cmd.Process.Pid
	}
	return 0
}
