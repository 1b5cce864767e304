package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

const (
	defaultRedisTimeout = 500 * time.Millisecond
	defaultLeaseTTL     = 30 * time.Second
)

// State says where replica-shared state lives. Without state.redis
// everything stays in the process's memory: one replica, no dependency.
type State struct {
	Redis Redis `yaml:"redis"`
	// Replica is this replica's identity towards the others: where they
	// forward requests for sessions whose upstream connection lives here
	// (stdio children, legacy SSE connections, task hosts, parked Multi
	// Round-Trip requests). Needs state.redis.
	Replica Replica `yaml:"replica"`
}

// Replica configures request forwarding between replicas
// (docs/security.md "Shared state").
type Replica struct {
	// AdvertiseURL is the base URL other replicas reach this one on, e.g.
	// http://10.0.0.7:8080 (scheme and host[:port], no path). Required when
	// state.redis is set and an upstream is stdio or sse; without it such
	// sessions are served only by the replica that created them.
	AdvertiseURL string `yaml:"advertise_url"`
	// SecretFile is a 0600 file holding the HMAC key (32 bytes or more)
	// every replica shares; a forwarded request without a valid signature
	// is refused. Required with advertise_url.
	SecretFile string `yaml:"secret_file"`
	// SecretEnv names an environment variable holding the key instead, for
	// platforms that mount secret files group-readable (a Kubernetes
	// Secret volume with fsGroup), which secret_file refuses. Exactly one
	// of the two.
	SecretEnv string `yaml:"secret_env"`
}

// EnvAdvertiseURL overrides state.replica.advertise_url: in Kubernetes,
// MCPGATE_ADVERTISE_URL=http://$(POD_IP):8080 with POD_IP from the
// downward API (status.podIP), one config file for every pod.
const EnvAdvertiseURL = "MCPGATE_ADVERTISE_URL"

// Enabled reports whether this replica forwards and accepts forwarded
// requests.
func (r Replica) Enabled() bool { return r.AdvertiseURL != "" }

// Redis is the shared state store of several gateway replicas (DPoP replay
// records, rate-limit buckets, session bindings, single-use requestState
// values). docs/configuration.md "state".
type Redis struct {
	// URL is redis://host:port[/db] or rediss://… (TLS). Flag --redis-url,
	// environment MCPGATE_REDIS_URL. A password in the URL is refused: it
	// would sit in argv, the environment of every child and the logs.
	URL string `yaml:"url"`
	// Username is the ACL user (Redis 6+). Default none ("default").
	Username string `yaml:"username"`
	// PasswordEnv names an environment variable holding the password;
	// PasswordFile a 0600 file holding it. At most one.
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	// TLS configures rediss:// connections: a CA bundle to trust instead of
	// the system roots, and the server name to verify. Optional.
	TLS RedisTLS `yaml:"tls"`
	// KeyPrefix starts every key mcpgate writes, so that several
	// deployments can share one Redis. Default "mcpgate:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each Redis round trip (dial, read, write). Default
	// 500ms: a request waits at most this long before failing closed.
	Timeout Duration `yaml:"timeout"`
	// LeaseTTL is how long a per-subject budget lease (a session, stream,
	// stdio child or task counted against the subject's share across
	// replicas) outlives the last renewal by the replica holding it; a
	// replica renews its leases every LeaseTTL/3. Bounds how long a killed
	// replica's sessions still count. Default 30s, 3s to 10m.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// RedisTLS configures TLS to Redis (rediss://).
type RedisTLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// EnvRedisURL overrides state.redis.url (a flag --redis-url wins over it).
const EnvRedisURL = "MCPGATE_REDIS_URL"

// Enabled reports whether replica-shared state is configured.
func (r Redis) Enabled() bool { return r.URL != "" }

func (r *Redis) applyDefaults() {
	if r.URL == "" {
		return
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = "mcpgate:"
	}
	if r.Timeout.Duration == 0 {
		r.Timeout.Duration = defaultRedisTimeout
	}
	if r.LeaseTTL.Duration == 0 {
		r.LeaseTTL.Duration = defaultLeaseTTL
	}
}

// validateReplica checks state.replica (the key file itself is read when
// the gateway starts: state.LoadHopKey).
func validateReplica(st State) error {
	r := st.Replica
	if r.AdvertiseURL == "" && r.SecretFile == "" && r.SecretEnv == "" {
		return nil
	}
	if !st.Redis.Enabled() {
		return fmt.Errorf("state.replica: set without state.redis.url; replicas find each other's sessions in Redis, so set the url (or flag --redis-url, env %s)", EnvRedisURL)
	}
	if r.SecretFile != "" && r.SecretEnv != "" {
		return fmt.Errorf("state.replica: set secret_file or secret_env, not both")
	}
	if r.AdvertiseURL == "" || (r.SecretFile == "" && r.SecretEnv == "") {
		return fmt.Errorf("state.replica: set both advertise_url and secret_file (a 0600 file with 32 or more random bytes shared by all replicas) or secret_env")
	}
	// The messages never repeat the value: it could hold credentials.
	u, err := url.Parse(r.AdvertiseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("state.replica.advertise_url: not an http(s)://host[:port] URL")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("state.replica.advertise_url: give scheme and host[:port] only (no user, path, query or fragment), e.g. http://10.0.0.7:8080")
	}
	return nil
}

// validateRedis checks state.redis; errors name the key and the fix and
// never repeat a password.
func validateRedis(r Redis) error {
	if r.URL == "" {
		if r.PasswordEnv != "" || r.PasswordFile != "" || r.TLS.CAFile != "" {
			return fmt.Errorf("state.redis: password or tls set without state.redis.url; set the url (or flag --redis-url, env %s)", EnvRedisURL)
		}
		return nil
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Errorf("state.redis.url: not a URL; want redis://host:port[/db] or rediss://host:port[/db]")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("state.redis.url: scheme %q; want redis:// or rediss:// (TLS)", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("state.redis.url: no host; want redis://host:port[/db]")
	}
	if _, ok := u.User.Password(); ok {
		return fmt.Errorf("state.redis.url: contains a password; remove it and set state.redis.password_file (a 0600 file) or state.redis.password_env")
	}
	if u.RawQuery != "" {
		return fmt.Errorf("state.redis.url: query parameters are not supported; use the state.redis keys (docs/configuration.md)")
	}
	if db := strings.Trim(u.Path, "/"); db != "" && strings.Trim(db, "0123456789") != "" {
		return fmt.Errorf("state.redis.url: path %q is not a database number", u.Path)
	}
	if r.PasswordEnv != "" && r.PasswordFile != "" {
		return fmt.Errorf("state.redis: set password_env or password_file, not both")
	}
	if r.TLS.CAFile != "" && u.Scheme != "rediss" {
		return fmt.Errorf("state.redis.tls.ca_file: set, but the url is redis:// (no TLS); use rediss://")
	}
	if r.Timeout.Duration < 0 {
		return fmt.Errorf("state.redis.timeout: negative")
	}
	if d := r.LeaseTTL.Duration; d != 0 && (d < 3*time.Second || d > 10*time.Minute) {
		return fmt.Errorf("state.redis.lease_ttl: %s; want 3s to 10m (default 30s): how long a dead replica's sessions and streams still count against their subjects' shares", d)
	}
	return nil
}
