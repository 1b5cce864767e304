package config

import (
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
