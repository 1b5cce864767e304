// Command echoserver is a tiny MCP server over stdio for tests: it answers
// initialize and tools/list, and its tools exercise progress, sampling,
// notifications, crashes, slowness and stubborn shutdown.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type msg struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

var (
	outMu   sync.Mutex // guards writes to stdout (one line per message)
	waiting = map[string]chan json.RawMessage{}
	wmu     sync.Mutex // guards waiting
)

func send(v any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func result(id json.RawMessage, r any) {
	send(map[string]any{"jsonrpc": "2.0", "id": id, "result": r})
}

func text(s string) map[string]any {
	return map[string]any{"content": []any{map[string]any{"type": "text", "text": s}}}
}

func main() {
	if os.Getenv("IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Fprintln(os.Stderr, "echoserver started", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<22)
	for in.Scan() {
		var m msg
		if err := json.Unmarshal(in.Bytes(), &m); err != nil {
			continue
		}
		if m.Method == "" && m.ID != nil { // a response to our request
			wmu.Lock()
			ch := waiting[string(m.ID)]
			wmu.Unlock()
			if ch != nil {
				if m.Error != nil {
					ch <- m.Error // the answer was an error: report it as such
				} else {
					ch <- m.Result
				}
			}
			continue
		}
		go handle(m)
	}
	if os.Getenv("IGNORE_TERM") == "1" {
		time.Sleep(time.Hour) // even a closed stdin does not stop us
	}
}

func handle(m msg) {
	switch m.Method {
	case "initialize":
		result(m.ID, map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]any{"name": "echoserver", "version": "1"}})
	case "tools/list":
		result(m.ID, map[string]any{"tools": []any{
			map[string]any{"name": "echo", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "secret_admin", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "env", "inputSchema": map[string]any{"type": "object"}},
		}})
	case "tools/call":
		var p struct {
			Name      string         `json:"name"`
			Arguments map[string]any `json:"arguments"`
			Meta      struct {
				Token json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		}
		json.Unmarshal(m.Params, &p)
		switch p.Name {
		case "echo":
			result(m.ID, text(fmt.Sprint(p.Arguments["text"])))
		case "pid":
			result(m.ID, text(fmt.Sprint(os.Getpid())))
		case "env": // the child's own view of one environment variable
			result(m.ID, text(os.Getenv(fmt.Sprint(p.Arguments["name"]))))
		case "progress":
			for i := 1; i <= 3; i++ {
				send(map[string]any{"jsonrpc": "2.0", "method": "notifications/progress", "params": map[string]any{"progressToken": p.Meta.Token, "progress": i, "total": 3}})
			}
			result(m.ID, text("done"))
		case "sample":
			ch := make(chan json.RawMessage, 1)
			wmu.Lock()
			waiting[`"s1"`] = ch
			wmu.Unlock()
			send(map[string]any{"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": map[string]any{"messages": []any{}, "maxTokens": 5}})
			r := <-ch
			result(m.ID, text("sampled:"+string(r)))
		case "notify":
			send(map[string]any{"jsonrpc": "2.0", "method": "notifications/message", "params": map[string]any{"level": "info", "data": "hello"}})
			result(m.ID, text("notified"))
		case "crash":
			os.Exit(3)
		case "sleep":
			time.Sleep(30 * time.Second)
			result(m.ID, text("slept"))
		}
	case "ping":
		result(m.ID, map[string]any{})
	}
}
