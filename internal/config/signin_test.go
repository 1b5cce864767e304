package config

import (
	"strings"
	"testing"
	"time"
)

const signInYAML = `authorization_server: builtin
upstreams:
  - url: http://127.0.0.1:9/mcp
builtin:
  sign_in:
`

// TestSignInLimits: builtin.sign_in parses, and bad values name their key.
func TestSignInLimits(t *testing.T) {
	g, err := ParseGateway([]byte(signInYAML + "    max_concurrent_hashes: 3\n    hash_queue_timeout: 2s\n    max_delay: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	g.ApplyDefaults()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := g.Builtin.SignIn; s.MaxConcurrentHashes != 3 || s.HashQueueTimeout.Duration != 2*time.Second || s.MaxDelay.Duration != time.Minute {
		t.Fatalf("%+v", s)
	}
	for body, key := range map[string]string{
		"    max_concurrent_hashes: -1\n":         "builtin.sign_in.max_concurrent_hashes",
		"    max_concurrent_hashes: 1000\n":       "builtin.sign_in.max_concurrent_hashes",
		"    max_queued_hashes: -2\n":             "builtin.sign_in.max_queued_hashes",
		"    failures_before_delay: -1\n":         "builtin.sign_in.failures_before_delay",
		"    base_delay: 1h\n    max_delay: 1m\n": "builtin.sign_in.base_delay",
		"    hash_queue_timeout: -1s\n":           "builtin.sign_in.hash_queue_timeout",
	} {
		g, err := ParseGateway([]byte(signInYAML + body))
		if err == nil {
			g.ApplyDefaults()
			err = g.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", body, err, key)
		}
	}
	if _, err := ParseGateway([]byte(signInYAML + "    max_hashes: 3\n")); err == nil {
		t.Error("an unknown sign_in key is accepted")
	}
}
