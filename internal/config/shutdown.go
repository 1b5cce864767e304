package config

import (
	"fmt"
	"strconv"
	"time"
)

// EnvShutdownDrain overrides shutdown_drain (a flag --shutdown-drain wins
// over it).
const EnvShutdownDrain = "MCPGATE_SHUTDOWN_DRAIN"

// maxShutdownDrain caps shutdown_drain: a longer drain is a typo, and a
// replica that never leaves holds a rolling upgrade up.
const maxShutdownDrain = time.Hour

// overrideDrain applies MCPGATE_SHUTDOWN_DRAIN, then --shutdown-drain, to
// g.ShutdownDrain.
func overrideDrain(g *Gateway, env, flag string) error {
	for _, src := range []struct{ name, v string }{{EnvShutdownDrain, env}, {"--shutdown-drain", flag}} {
		if src.v == "" {
			continue
		}
		d, err := parseDuration(src.v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration: write e.g. \"15s\" or a number of seconds", src.name, src.v)
		}
		g.ShutdownDrain.Duration = d
	}
	return nil
}

// parseDuration reads "30s", "5m" or an integer number of seconds, like
// Duration in YAML.
func parseDuration(s string) (time.Duration, error) {
	if secs, err := strconv.Atoi(s); err == nil {
		return time.Duration(secs) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// validateShutdown checks shutdown_drain and shutdown_timeout.
func validateShutdown(g *Gateway, v *validator) {
	if d := g.ShutdownDrain.Duration; d < 0 || d > maxShutdownDrain {
		v.add("shutdown_drain", "%s is out of range: use 0 (no drain) up to %s, e.g. 15s (a little longer than the load balancer's readiness check interval × failure threshold)", d, maxShutdownDrain)
	}
	if g.ShutdownTimeout.Duration <= 0 {
		v.add("shutdown_timeout", "%s: must be positive, e.g. 10s", g.ShutdownTimeout.Duration)
	}
}
