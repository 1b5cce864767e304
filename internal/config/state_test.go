package config

import (
	"strings"
	"testing"
)

// TestRedisConfig: state.redis is optional; a URL with a password, another
// scheme, query parameters or a non-numeric database is refused with the
// key and the fix, and the error never repeats the password.
func TestRedisConfig(t *testing.T) {
	for _, row := range []struct {
		redis Redis
		want  string // "" = valid
	}{
		{Redis{}, ""},
		{Redis{URL: "redis://127.0.0.1:6379"}, ""},
		{Redis{URL: "rediss://r.example:6380/2", PasswordFile: "/run/secrets/redis", TLS: RedisTLS{CAFile: "/ca.pem"}}, ""},
		{Redis{URL: "redis://:hunter2@127.0.0.1:6379"}, "contains a password"},
		{Redis{URL: "redis://u:hunter2@127.0.0.1:6379"}, "contains a password"},
		{Redis{URL: "http://127.0.0.1:6379"}, "want redis:// or rediss://"},
		{Redis{URL: "redis://"}, "no host"},
		{Redis{URL: "redis://h:1/x"}, "not a database number"},
		{Redis{URL: "redis://h:1?password=hunter2"}, "query parameters"},
		{Redis{URL: "redis://h:1", PasswordEnv: "A", PasswordFile: "/b"}, "not both"},
		{Redis{URL: "redis://h:1", TLS: RedisTLS{CAFile: "/ca.pem"}}, "use rediss://"},
		{Redis{PasswordFile: "/b"}, "without state.redis.url"},
	} {
		err := validateRedis(row.redis)
		switch {
		case row.want == "" && err != nil:
			t.Errorf("%+v: %v", row.redis, err)
		case row.want != "" && (err == nil || !strings.Contains(err.Error(), row.want)):
			t.Errorf("%+v: %v, want %q", row.redis, err, row.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("error repeats the password: %v", err)
		}
	}
}

// TestRedisURLOverride: --redis-url wins over MCPGATE_REDIS_URL, which
// wins over the file; the prefix and timeout get their defaults.
func TestRedisURLOverride(t *testing.T) {
	env := map[string]string{EnvRedisURL: "redis://env:6379"}
	getenv := func(k string) string { return env[k] }
	g, err := LoadGateway(ServeFlags{Upstream: "http://127.0.0.1:9/mcp", Issuer: "https://as.example"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if g.State.Redis.URL != "redis://env:6379" || g.State.Redis.KeyPrefix != "mcpgate:" || g.State.Redis.Timeout.Duration != defaultRedisTimeout {
		t.Fatalf("env: %+v", g.State.Redis)
	}
	g, err = LoadGateway(ServeFlags{Upstream: "http://127.0.0.1:9/mcp", Issuer: "https://as.example", RedisURL: "redis://flag:6379"}, getenv)
	if err != nil || g.State.Redis.URL != "redis://flag:6379" {
		t.Fatalf("flag: %+v %v", g.State.Redis, err)
	}
	g, err = LoadGateway(ServeFlags{Upstream: "http://127.0.0.1:9/mcp", Issuer: "https://as.example"}, func(string) string { return "" })
	if err != nil || g.State.Redis.Enabled() || g.State.Redis.KeyPrefix != "" {
		t.Fatalf("unset: %+v %v", g.State.Redis, err)
	}
}
