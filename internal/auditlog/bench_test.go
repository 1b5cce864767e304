package auditlog

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// benchRecord is a typical gateway audit record (~280 bytes).
var benchRecord = []byte(`{"time":"2026-12-02T18:00:00.123456789Z","request_id":"01JEXAMPLE0000000000000000","subject":"alice@example.com","client_id":"https://client.example.com/cimd.json","issuer":"https://idp.example.com","token_id":"3f2a9c1b","upstream":"files","method":"tools/call","name":"read_file","decision":"allow","remote":"127.0.0.1"}`)

// BenchmarkAuditWrite compares one record written as the gateway did
// before chaining (a locked write of the JSON line) with the chain, with
// batch signatures and with a signature per record, to a file and to
// io.Discard (the CPU cost alone).
func BenchmarkAuditWrite(b *testing.B) {
	_, priv := newKey(b)
	for _, sink := range []string{"file", "discard"} {
		b.Run(sink+"/plain", func(b *testing.B) {
			out := benchSink(b, sink)
			var mu sync.Mutex
			line := append(append([]byte(nil), benchRecord...), '\n')
			b.ReportAllocs()
			for b.Loop() {
				mu.Lock()
				_, _ = out.Write(line)
				mu.Unlock()
			}
		})
		for _, c := range []struct {
			name  string
			key   bool
			every int
		}{{"chain", false, 0}, {"chain+sign1000", true, 1000}, {"chain+sign1", true, 1}} {
			b.Run(sink+"/"+c.name, func(b *testing.B) {
				o := Options{SignEvery: c.every, SignInterval: -1}
				if c.key {
					o.Key = priv
				}
				if sink == "file" {
					o.Path = filepath.Join(b.TempDir(), "audit.jsonl")
				} else {
					o.Stream = io.Discard
				}
				w, err := Open(o)
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				b.ReportAllocs()
				for b.Loop() {
					_, _ = w.Write(benchRecord)
				}
			})
		}
	}
}

func benchSink(b *testing.B, sink string) io.Writer {
	if sink == "discard" {
		return io.Discard
	}
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}
