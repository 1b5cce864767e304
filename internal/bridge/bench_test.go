package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// BenchmarkCallThroughBridge: one tools/call at a time through the
// bridge (in-process pipes) to a constant-cost server; compare with
// BenchmarkCallDirect for the bridge's share.
func BenchmarkCallThroughBridge(b *testing.B) {
	srv := httptest.NewServer(constServer())
	defer srv.Close()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	br := New(Options{Transport: &mcpclient.Transport{URL: srv.URL, HTTP: srv.Client()}, Stdin: inR, Stdout: outW})
	go br.Run(context.Background())
	r := bufio.NewReader(outR)
	fmt.Fprintln(inW, initReq)
	r.ReadBytes('\n')
	b.ResetTimer()
	for i := range b.N {
		fmt.Fprintf(inW, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ping","arguments":{}}}`+"\n", i+10)
		if _, err := r.ReadBytes('\n'); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	inW.Close()
}

func BenchmarkCallDirect(b *testing.B) {
	srv := httptest.NewServer(constServer())
	defer srv.Close()
	t := &mcpclient.Transport{URL: srv.URL, HTTP: srv.Client()}
	b.ResetTimer()
	for i := range b.N {
		msg := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ping","arguments":{}}}`, i+10)
		req, _ := http.NewRequest("POST", srv.URL, nil)
		_ = req
		if err := t.Post(context.Background(), msg, func([]byte) {}); err != nil {
			b.Fatal(err)
		}
	}
}

func constServer() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var buf [512]byte
		n, _ := io.ReadFull(r.Body, buf[:])
		body := buf[:n]
		var id []byte
		for i := 0; i+5 < len(body); i++ {
			if string(body[i:i+5]) == `"id":` {
				j := i + 5
				for j < len(body) && body[j] != ',' {
					j++
				}
				id = body[i+5 : j]
				break
			}
		}
		if string(id) == "" {
			w.WriteHeader(202)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","content":[{"type":"text","text":"pong"}]}}`, id)
	}
}
