package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

func openTest(t *testing.T) (*Redis, *testutil.Redis) {
	t.Helper()
	srv := testutil.StartRedis(t)
	r, err := Open(config.Redis{URL: srv.URL(), KeyPrefix: "t:", Timeout: config.Duration{Duration: 500 * time.Millisecond}}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, srv
}

func TestDirectoryBindsToOneOwner(t *testing.T) {
	r, _ := openTest(t)
	d := NewDirectory(r)
	ctx := context.Background()
	a := Entry{Owner: "iss\x00alice", ClientID: "c1", Replica: "http://10.0.0.1:8080", Instance: "i1"}
	if ok, err := d.Put(ctx, KindSession, "up", "s-1", a, time.Minute); !ok || err != nil {
		t.Fatalf("put: %v %v", ok, err)
	}
	// Another subject cannot take over the id.
	if ok, err := d.Put(ctx, KindSession, "up", "s-1", Entry{Owner: "iss\x00mallory"}, time.Minute); ok || err != nil {
		t.Fatalf("foreign put: ok=%v err=%v, want refused", ok, err)
	}
	got, err := d.Get(ctx, KindSession, "up", "s-1")
	if err != nil || got == nil || *got != a {
		t.Fatalf("get = %+v, %v; want %+v", got, err, a)
	}
	// Same id on another upstream, or of another kind, is another binding.
	if e, _ := d.Get(ctx, KindSession, "up2", "s-1"); e != nil {
		t.Fatal("an id leaked across upstreams")
	}
	if e, _ := d.Get(ctx, KindTask, "up", "s-1"); e != nil {
		t.Fatal("an id leaked across kinds")
	}
	// Keys hash the id: it never appears in a key name.
	keys, _ := r.Client().Keys(ctx, "*").Result()
	for _, k := range keys {
		if strings.Contains(k, "s-1") || !strings.HasPrefix(k, "t:dir:sess:") {
			t.Fatalf("key %q", k)
		}
	}
	if ok, err := d.Touch(ctx, KindSession, "up", "s-1", 10*time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := d.Touch(ctx, KindSession, "up", "nope", 10*time.Minute); ok || err != nil {
		t.Fatal("touch of a missing entry", ok, err)
	}
	if ttl := r.Client().PTTL(ctx, keys[0]).Val(); ttl < 9*time.Minute {
		t.Fatalf("touch left ttl %v", ttl)
	}
	if err := d.Delete(ctx, KindSession, "up", "s-1"); err != nil {
		t.Fatal(err)
	}
	if e, err := d.Get(ctx, KindSession, "up", "s-1"); e != nil || err != nil {
		t.Fatalf("after delete: %+v %v", e, err)
	}
}

func TestDirectoryRedisDownIsAnError(t *testing.T) {
	r, srv := openTest(t)
	d := NewDirectory(r)
	srv.Stop()
	_, err := d.Get(context.Background(), KindSession, "up", "s")
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("get with Redis down: %v, want UnavailableError (never 'not found')", err)
	}
	if _, err := d.Put(context.Background(), KindSession, "up", "s", Entry{Owner: "o"}, time.Minute); !errors.As(err, &ue) {
		t.Fatalf("put: %v", err)
	}
}

const hopSelf = "http://10.0.0.1:8080"

func TestHops(t *testing.T) {
	r, srv := openTest(t)
	key := []byte(strings.Repeat("k", 32))
	h := NewHops(key, r)
	ctx := context.Background()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	sig := h.Sign(hopSelf, "POST", "/mcp", "sess-1", body, []byte(`{"sub":"alice"}`))
	hop, err := h.Verify(ctx, sig, hopSelf, "POST", "/mcp", "sess-1")
	if err != nil || string(hop.Principal) != `{"sub":"alice"}` || !hop.BodyMatches(body) || hop.BodyMatches([]byte("{}")) {
		t.Fatalf("verify: %+v %v", hop, err)
	}
	var hr *HopRefusal
	if _, err := h.Verify(ctx, sig, hopSelf, "POST", "/mcp", "sess-1"); !errors.As(err, &hr) {
		t.Fatalf("replayed nonce: %v, want refused", err)
	}
	mk := func(dest, uri string) string { return h.Sign(dest, "POST", uri, "s", nil, []byte(`{}`)) }
	for name, c := range map[string]struct {
		sig, self, method, uri, binding string
	}{
		"missing":       {"", hopSelf, "POST", "/mcp", "sess-1"},
		"other method":  {mk(hopSelf, "/mcp"), hopSelf, "DELETE", "/mcp", "s"},
		"other path":    {mk(hopSelf, "/mcp"), hopSelf, "POST", "/other", "s"},
		"query added":   {mk(hopSelf, "/mcp"), hopSelf, "POST", "/mcp?x=1", "s"},
		"query changed": {mk(hopSelf, "/mcp?x=1"), hopSelf, "POST", "/mcp?x=2", "s"},
		"query dropped": {mk(hopSelf, "/mcp?x=1"), hopSelf, "POST", "/mcp", "s"},
		"other replica": {mk("http://10.0.0.2:8080", "/mcp"), hopSelf, "POST", "/mcp", "s"},
		"no replica":    {mk("", "/mcp"), "", "POST", "/mcp", "s"},
		"other session": {mk(hopSelf, "/mcp"), hopSelf, "POST", "/mcp", "t"},
		"wrong key":     {NewHops([]byte(strings.Repeat("x", 32)), r).Sign(hopSelf, "POST", "/mcp", "s", nil, []byte(`{}`)), hopSelf, "POST", "/mcp", "s"},
		"tampered":      {tamper(h.Sign(hopSelf, "POST", "/mcp", "s", nil, []byte(`{"sub":"a"}`))), hopSelf, "POST", "/mcp", "s"},
		"garbage":       {"v2.x.y", hopSelf, "POST", "/mcp", "s"},
		"version 1":     {"v1" + strings.TrimPrefix(mk(hopSelf, "/mcp"), "v2"), hopSelf, "POST", "/mcp", "s"},
	} {
		if _, err := h.Verify(ctx, c.sig, c.self, c.method, c.uri, c.binding); !errors.As(err, &hr) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	if _, err := h.Verify(ctx, mk(hopSelf, "/mcp?x=1&y=%2F"), hopSelf, "POST", "/mcp?x=1&y=%2F", "s"); err != nil {
		t.Errorf("signed query: %v", err)
	}
	stale := NewHops(key, r)
	stale.now = func() time.Time { return time.Now().Add(-31 * time.Second) }
	if _, err := h.Verify(ctx, stale.Sign(hopSelf, "POST", "/mcp", "s", nil, []byte(`{}`)), hopSelf, "POST", "/mcp", "s"); !errors.As(err, &hr) {
		t.Errorf("stale: %v, want refused", err)
	}
	srv.Stop()
	var ue *UnavailableError
	if _, err := h.Verify(ctx, mk(hopSelf, "/mcp"), hopSelf, "POST", "/mcp", "s"); !errors.As(err, &ue) {
		t.Errorf("Redis down: %v, want unavailable", err)
	}
}

// TestHopNonceOutlivesAcceptance: a hop is acceptable for ±HopWindow of a
// receiver's clock, and replicas' clocks may be HopMaxSkew apart: from the
// earliest moment a replica accepts a hop, one accepts it for another
// 2×HopWindow+HopMaxSkew. The nonce record must outlive all of it, or a
// replay after it expired passes (the old 61s did not).
func TestHopNonceOutlivesAcceptance(t *testing.T) {
	r, _ := openTest(t)
	key := []byte(strings.Repeat("k", 32))
	t0 := time.Now()
	sender := NewHops(key, r)
	sender.now = func() time.Time { return t0.Add(HopMaxSkew) }
	behind := NewHops(key, r)
	behind.now = func() time.Time { return t0 }
	sig := sender.Sign(hopSelf, "POST", "/mcp", "s", nil, []byte(`{}`))
	hop, err := behind.Verify(context.Background(), sig, hopSelf, "POST", "/mcp", "s")
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	ttl, err := r.c.PTTL(context.Background(), r.Key("hop", hop.Nonce)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Last moment any receiver within the skew bound accepts the hop,
	// counted from its first use.
	last := 2*HopWindow + HopMaxSkew
	if ttl <= last {
		t.Fatalf("nonce kept %v; the hop stays acceptable for %v after its first use", ttl, last)
	}
}

// tamper flips a byte of the signed payload.
func tamper(sig string) string {
	b := []byte(sig)
	b[5] ^= 1
	return string(b)
}

func TestLoadHopKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, mode)
		return p
	}
	if _, err := LoadHopKey(write("ok", strings.Repeat("a", 64)+"\n", 0o600)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHopKey(write("short", "abc", 0o600)); err == nil || strings.Contains(err.Error(), "abc") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := LoadHopKey(write("open", strings.Repeat("a", 64), 0o644)); err == nil {
		t.Fatal("a world-readable key was accepted")
	}
}

// TestLoadReplicaKeyFromEnv: state.replica.secret_env is the alternative
// for platforms that mount secret files group-readable; an unset, empty or
// short value is refused without repeating it, and the file path is used
// when no env is named.
func TestLoadReplicaKeyFromEnv(t *testing.T) {
	env := map[string]string{"HOP": strings.Repeat("k", 40), "SHORT": "s3cr3t"}
	getenv := func(k string) string { return env[k] }
	if k, err := LoadReplicaKey(config.Replica{SecretEnv: "HOP"}, getenv); err != nil || string(k) != env["HOP"] {
		t.Fatalf("env key: %q %v", k, err)
	}
	if _, err := LoadReplicaKey(config.Replica{SecretEnv: "SHORT"}, getenv); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("short env key: %v", err)
	}
	if _, err := LoadReplicaKey(config.Replica{SecretEnv: "UNSET"}, getenv); err == nil || !strings.Contains(err.Error(), "UNSET") {
		t.Fatalf("unset env: %v", err)
	}
	p := filepath.Join(t.TempDir(), "k")
	_ = os.WriteFile(p, []byte(strings.Repeat("f", 40)), 0o600)
	if k, err := LoadReplicaKey(config.Replica{SecretFile: p}, getenv); err != nil || string(k) != strings.Repeat("f", 40) {
		t.Fatalf("file key: %q %v", k, err)
	}
}
