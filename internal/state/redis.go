// Package state is where gateway replicas share state: Redis, when
// state.redis is configured. Without it mcpgate keeps everything in its own
// memory, exactly as a single replica always did, and this package is not
// used.
//
// Every key starts with the configured prefix (Key). Every round trip is
// bounded by state.redis.timeout; a caller that gets an error fails closed
// (docs/security.md "Shared state").
package state

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Redis is the shared store of a deployment's replicas.
type Redis struct {
	c       *redis.Client
	prefix  string
	timeout time.Duration
}

// Open builds the client for cfg (it does not connect: Ping does). The
// password is read from password_env or password_file; errors name the key
// and never the password.
func Open(cfg config.Redis, getenv func(string) string) (*Redis, error) {
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("state.redis.url: %v", redactURL(err, cfg.URL))
	}
	if cfg.Username != "" {
		opt.Username = cfg.Username
	}
	if cfg.PasswordEnv != "" || cfg.PasswordFile != "" {
		pw, err := config.ReadSecret("state.redis.password_env", cfg.PasswordEnv, "state.redis.password_file", cfg.PasswordFile, getenv)
		if err != nil {
			return nil, err
		}
		opt.Password = pw
	}
	if opt.TLSConfig != nil {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
		if cfg.TLS.ServerName != "" {
			opt.TLSConfig.ServerName = cfg.TLS.ServerName
		}
		if cfg.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("state.redis.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("state.redis.tls.ca_file: %s holds no PEM certificate", cfg.TLS.CAFile)
			}
			opt.TLSConfig.RootCAs = pool
		}
	}
	t := cfg.Timeout.Duration
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = t, t, t
	opt.PoolTimeout = t
	opt.MaxRetries = 0 // a failed round trip fails the request closed; retrying hides an outage
	// A new connection costs HELLO only: no CLIENT SETINFO (library name)
	// and no CLIENT MAINT_NOTIFICATIONS (managed-cluster upgrade pushes),
	// two round trips each time the pool dials, e.g. after an outage.
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	// go-redis logs connection errors through its own logger (to stderr,
	// once per failed dial: a flood during an outage); the gateway reports
	// Redis failures itself (readyz, 503 answers, the log).
	quietOnce.Do(func() { redis.SetLogger(&logging.VoidLogger{}) })
	return &Redis{c: redis.NewClient(opt), prefix: cfg.KeyPrefix, timeout: t}, nil
}

// quietOnce silences go-redis's process-wide logger.
var quietOnce sync.Once

// Client is the underlying client, for the package's own stores.
func (r *Redis) Client() *redis.Client { return r.c }

// Timeout is the bound of one round trip.
func (r *Redis) Timeout() time.Duration { return r.timeout }

// Key joins the prefix and parts with ":". Parts that come from callers
// (subjects, session ids) must be hashed or escaped by the store that
// builds them; Key itself only concatenates.
func (r *Redis) Key(parts ...string) string {
	return r.prefix + strings.Join(parts, ":")
}

// Ping checks that Redis answers within the timeout (readyz).
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %w", err)
	}
	return nil
}

// Writable checks that Redis accepts a write within the timeout (readyz):
// a Redis out of memory under noeviction still answers PING, yet refuses
// every store's write, so readiness must write. The key is instance's own
// and expires at once (PX 2000): probes cost no memory over time.
func (r *Redis) Writable(ctx context.Context, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.c.Set(ctx, r.Key("readyz", instance), 1, 2*time.Second).Err(); err != nil {
		return fmt.Errorf("redis refuses writes: %w", err)
	}
	return nil
}

// Close closes the client's connections.
func (r *Redis) Close() error { return r.c.Close() }

// redactURL keeps a URL parse error from repeating the URL (which
// validation already refused to hold a password, but belt and braces).
func redactURL(err error, u string) error {
	msg := strings.ReplaceAll(err.Error(), u, "<url>")
	return errors.New(msg)
}
