package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateReplica(t *testing.T) {
	redis := Redis{URL: "redis://127.0.0.1:6379"}
	for _, c := range []struct {
		name string
		st   State
		want string // "" = valid
	}{
		{"none", State{}, ""},
		{"ok", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://10.0.0.7:8080", SecretFile: "/k"}}, ""},
		{"ok trailing slash", State{Redis: redis, Replica: Replica{AdvertiseURL: "https://r1.internal/", SecretFile: "/k"}}, ""},
		{"without redis", State{Replica: Replica{AdvertiseURL: "http://10.0.0.7:8080", SecretFile: "/k"}}, "without state.redis.url"},
		{"no secret", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://10.0.0.7:8080"}}, "set both"},
		{"no url", State{Redis: redis, Replica: Replica{SecretFile: "/k"}}, "set both"},
		{"env secret", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://10.0.0.7:8080", SecretEnv: "MCPGATE_HOP_KEY"}}, ""},
		{"env and file", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://10.0.0.7:8080", SecretEnv: "K", SecretFile: "/k"}}, "not both"},
		{"env without url", State{Redis: redis, Replica: Replica{SecretEnv: "K"}}, "set both"},
		{"scheme", State{Redis: redis, Replica: Replica{AdvertiseURL: "ftp://h", SecretFile: "/k"}}, "not an http(s)"},
		{"path", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://h/mcp", SecretFile: "/k"}}, "scheme and host[:port] only"},
		{"user", State{Redis: redis, Replica: Replica{AdvertiseURL: "http://u:p@h", SecretFile: "/k"}}, "scheme and host[:port] only"},
	} {
		err := validateReplica(c.st)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "u:p") {
			t.Errorf("%s: the error repeats the credentials: %v", c.name, err)
		}
	}
}

func TestAdvertiseURLFromEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := "issuers: [{issuer: https://idp.example.com}]\nupstreams: [{url: http://127.0.0.1:9000/mcp}]\n" +
		"state: {redis: {url: redis://127.0.0.1:6379}, replica: {advertise_url: http://placeholder:1, secret_file: /etc/mcpgate/hop.key}}\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvAdvertiseURL: "http://10.1.2.3:8080"}
	g, err := LoadGateway(ServeFlags{ConfigFile: file}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if g.State.Replica.AdvertiseURL != "http://10.1.2.3:8080" {
		t.Fatalf("advertise_url = %q, want the environment's", g.State.Replica.AdvertiseURL)
	}
}
