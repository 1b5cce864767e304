package state

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// BenchmarkReplaySeenBy records fresh jtis one at a time (c=1) on a real
// redis-server: the client-side cost of the DPoP replay check in Redis
// mode (the round trip the gateway adds to a DPoP request), and the
// server's CPU per call (redis-cpu-µs/op). docs/performance.md.
func BenchmarkReplaySeenBy(b *testing.B) {
	srv := testutil.StartRedis(b)
	r, err := Open(config.Redis{URL: srv.URL(), KeyPrefix: "b:", Timeout: config.Duration{Duration: time.Second}}, noenv)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := NewReplay(r, "bench", 1<<30)
	ctx := context.Background()
	until := time.Now().Add(5 * time.Minute)
	if _, err := s.SeenBy(ctx, "owner", "warm", until); err != nil {
		b.Fatal(err)
	}
	cpu0 := srv.CPU()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if seen, err := s.SeenBy(ctx, "owner", "thumb:"+strconv.Itoa(i), until); err != nil || seen {
			b.Fatal(seen, err)
		}
	}
	b.ReportMetric(float64((srv.CPU()-cpu0).Microseconds())/float64(b.N), "redis-cpu-µs/op")
}
