package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShutdownDrain(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "g.yaml")
	yaml := "issuers: [{issuer: https://idp.example.com}]\nupstreams: [{url: http://127.0.0.1:9000/mcp}]\nshutdown_drain: 20s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	base := ServeFlags{Issuer: "https://idp.example.com", Upstream: "http://127.0.0.1:9000/mcp"}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvShutdownDrain {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name  string
		flags ServeFlags
		env   string
		want  time.Duration
		err   string
	}{
		{name: "default none", flags: base, want: 0},
		{name: "file", flags: ServeFlags{ConfigFile: file}, want: 20 * time.Second},
		{name: "env over file", flags: ServeFlags{ConfigFile: file}, env: "5s", want: 5 * time.Second},
		{name: "flag over env", flags: ServeFlags{ConfigFile: file, ShutdownDrain: "7"}, env: "5s", want: 7 * time.Second},
		{name: "bad flag", flags: ServeFlags{Issuer: base.Issuer, Upstream: base.Upstream, ShutdownDrain: "soon"}, err: "--shutdown-drain"},
		{name: "bad env", flags: base, env: "1 minute", err: EnvShutdownDrain},
		{name: "negative", flags: ServeFlags{Issuer: base.Issuer, Upstream: base.Upstream, ShutdownDrain: "-1s"}, err: "shutdown_drain"},
		{name: "too long", flags: ServeFlags{Issuer: base.Issuer, Upstream: base.Upstream, ShutdownDrain: "48h"}, err: "shutdown_drain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := LoadGateway(tc.flags, env(tc.env))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.ShutdownDrain.Duration != tc.want {
				t.Fatalf("shutdown_drain = %s, want %s", g.ShutdownDrain.Duration, tc.want)
			}
		})
	}
}
