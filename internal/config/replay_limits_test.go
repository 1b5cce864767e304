package config

import (
	"strings"
	"testing"
)

// TestDPoPReplayLimits: the replay store keys have their defaults, the per
// subject share follows a smaller total, and bad values are refused with
// errors naming the key.
func TestDPoPReplayLimits(t *testing.T) {
	base := "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - url: http://127.0.0.1:9/mcp\nlimits:\n"
	for body, key := range map[string]string{
		"  dpop_replay_entries: -1\n":                                  "limits.dpop_replay_entries",
		"  dpop_replay_per_subject: -1\n":                              "limits.dpop_replay_per_subject",
		"  dpop_replay_entries: 100\n  dpop_replay_per_subject: 101\n": "limits.dpop_replay_per_subject",
	} {
		if err := parseValidate(base + body); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v", body, err)
		}
	}
	for body, want := range map[string][2]int{
		"  max_body_bytes: 1024\n":        {200000, 10000},
		"  dpop_replay_entries: 5000\n":   {5000, 2500},
		"  dpop_replay_per_subject: 50\n": {200000, 50},
	} {
		g, err := ParseGateway([]byte(base + body))
		if err != nil {
			t.Fatal(err)
		}
		g.ApplyDefaults()
		if err := g.Validate(); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if got := [2]int{g.Limits.DPoPReplayEntries, g.Limits.DPoPReplayPerSubject}; got != want {
			t.Errorf("%q: entries, per subject = %v, want %v", body, got, want)
		}
	}
}
