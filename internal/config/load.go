package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// UnmarshalYAML reads "30s", "5m", "1h30m" or an integer number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration like \"30s\" or a number of seconds", n.Line)
	}
	if secs, err := strconv.Atoi(n.Value); err == nil {
		d.Duration = time.Duration(secs) * time.Second
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write e.g. \"30s\", \"5m\" or a number of seconds", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as Go's duration string.
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// ServeFlags are the command-line flags of `mcpgate serve`.
type ServeFlags struct {
	ConfigFile, Listen, PublicURL, Issuer, JWKSURI, Upstream, UpstreamTransport, DPoP string
	LogLevel, LogFormat, MetricsListen, AuditFile, AuthorizationServer                string
	// RedisURL is --redis-url (state.redis.url).
	RedisURL string
	// ShutdownDrain is --shutdown-drain (shutdown_drain), e.g. "15s".
	ShutdownDrain string
	Scopes        []string
	// Command is the argv of a stdio upstream given after "--".
	Command []string
}

// Environment variables read by LoadGateway (flags win over them, they win
// over the file).
const (
	EnvListen        = "MCPGATE_LISTEN"
	EnvPublicURL     = "MCPGATE_PUBLIC_URL"
	EnvIssuer        = "MCPGATE_ISSUER"
	EnvLogLevel      = "MCPGATE_LOG_LEVEL"
	EnvLogFormat     = "MCPGATE_LOG_FORMAT"
	EnvMetricsListen = "MCPGATE_METRICS_LISTEN"
	EnvAuditFile     = "MCPGATE_AUDIT_FILE"
)

// LoadGateway reads the configuration file (if any), applies environment
// overrides, then flags, then defaults, and validates the result.
func LoadGateway(f ServeFlags, getenv func(string) string) (*Gateway, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	g := &Gateway{}
	if f.ConfigFile != "" {
		b, err := os.ReadFile(f.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if g, err = ParseGateway(b); err != nil {
			return nil, fmt.Errorf("%s: %w", f.ConfigFile, err)
		}
	}
	override := func(dst *string, env, flag string) {
		if v := getenv(env); v != "" {
			*dst = v
		}
		if flag != "" {
			*dst = flag
		}
	}
	override(&g.Listen, EnvListen, f.Listen)
	override(&g.PublicURL, EnvPublicURL, f.PublicURL)
	override(&g.Log.Level, EnvLogLevel, f.LogLevel)
	override(&g.Log.Format, EnvLogFormat, f.LogFormat)
	override(&g.Metrics.Listen, EnvMetricsListen, f.MetricsListen)
	override(&g.Audit.File, EnvAuditFile, f.AuditFile)
	override(&g.State.Redis.URL, EnvRedisURL, f.RedisURL)
	override(&g.State.Replica.AdvertiseURL, EnvAdvertiseURL, "")
	if err := overrideDrain(g, getenv(EnvShutdownDrain), f.ShutdownDrain); err != nil {
		return nil, err
	}
	if f.AuthorizationServer != "" {
		g.AuthorizationServer = f.AuthorizationServer
	}
	issuer := getenv(EnvIssuer)
	if f.Issuer != "" {
		issuer = f.Issuer
	}
	if issuer != "" || f.JWKSURI != "" {
		g.Issuers = []Issuer{{Issuer: issuer, JWKSURI: f.JWKSURI}}
	}
	if f.Upstream != "" || len(f.Command) > 0 {
		if len(g.Upstreams) > 0 {
			return nil, errors.New("--upstream or a command after -- cannot be combined with upstreams in the config file")
		}
		u := Upstream{URL: f.Upstream, Command: f.Command, Transport: f.UpstreamTransport}
		if f.UpstreamTransport == "" && f.Upstream != "" {
			u.Transport = "streamable"
		}
		g.Upstreams = []Upstream{u}
	}
	for i := range g.Upstreams {
		if f.DPoP != "" {
			g.Upstreams[i].DPoP = f.DPoP
		}
		if len(f.Scopes) > 0 {
			g.Upstreams[i].ScopesSupported = f.Scopes
		}
	}
	g.ApplyDefaults()
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// ParseGateway decodes a YAML document strictly: unknown keys are errors
// naming the key and its line.
func ParseGateway(b []byte) (*Gateway, error) {
	g := &Gateway{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(g); err != nil {
		if errors.Is(err, io.EOF) {
			return g, nil
		}
		return nil, explainYAML(err)
	}
	return g, nil
}

// explainYAML turns yaml's messages into ones that say what to do.
func explainYAML(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	if strings.Contains(msg, "field client_secret not found") {
		msg += " (secrets are never inline: use client_secret_file or client_secret_env)"
	} else if strings.Contains(msg, "field value not found") {
		msg += " (credentials are never inline: use value_env or value_file)"
	} else if strings.Contains(msg, "not found in type") {
		msg += " (unknown key: check the spelling against docs/configuration.md)"
	}
	return errors.New(msg)
}

// ApplyDefaults fills every unset field with its documented default.
func (g *Gateway) ApplyDefaults() {
	if g.Listen == "" {
		g.Listen = "127.0.0.1:8080"
	}
	if g.PublicURL == "" {
		scheme := "http://"
		if g.TLS.CertFile != "" {
			scheme = "https://"
		}
		g.PublicURL = scheme + g.Listen
	}
	g.PublicURL = strings.TrimSuffix(g.PublicURL, "/")
	if g.TLS.MinVersion == "" {
		g.TLS.MinVersion = "1.2"
	}
	g.State.Redis.applyDefaults()
	for i := range g.Issuers {
		g.Issuers[i].applyDefaults()
	}
	l := &g.Limits
	setInt64(&l.MaxBodyBytes, 4<<20)
	setInt(&l.MaxHeaderBytes, 64<<10)
	setInt(&l.MaxJSONDepth, 64)
	setInt(&l.MaxStreamsPerSubject, 16)
	if l.RequestsPerSecond == 0 {
		l.RequestsPerSecond = 20
	}
	setInt(&l.Burst, 40)
	setDur(&l.UpstreamTimeout, 60*time.Second)
	setInt(&l.MaxSessionsPerSubject, 16)
	setInt(&l.MaxTasksPerSubject, 256)
	setInt(&l.MaxTasks, 100000)
	setDur(&l.TaskTTLMax, 24*time.Hour)
	setInt(&l.MaxHTTPSessionsPerSubject, 1024)
	setDur(&l.BodyReadTimeout, 20*time.Second)
	setInt64(&l.BodyBytesInFlight, 64<<20)
	setInt64(&l.MaxFormBytes, 64<<10)
	setInt(&l.DPoPReplayEntries, 200000)
	if l.DPoPReplayPerSubject == 0 {
		l.DPoPReplayPerSubject = min(10000, max(1, l.DPoPReplayEntries/2))
	}
	setInt64(&l.FormBytesInFlight, 8<<20)
	setInt(&l.MaxConnections, 2048)
	setInt(&l.MaxConnectionsPerAddress, 128)
	setDur(&l.IdleTimeout, 60*time.Second)
	if g.Log.Level == "" {
		g.Log.Level = "info"
	}
	if g.Log.Format == "" {
		g.Log.Format = "text"
	}
	setDur(&g.ShutdownTimeout, 10*time.Second)
	setDur(&g.DPoPNonces.Lifetime, 5*time.Minute)
	for i := range g.Upstreams {
		u := &g.Upstreams[i]
		if u.Path == "" && len(g.Upstreams) == 1 {
			u.Path = "/mcp"
		}
		if u.Name == "" {
			u.Name = strings.Trim(strings.ReplaceAll(u.Path, "/", "-"), "-")
			if u.Name == "" {
				u.Name = "root"
			}
		}
		if u.Resource == "" {
			u.Resource = g.PublicURL + u.Path
		}
		if u.Transport == "" {
			switch {
			case len(u.Command) > 0:
				u.Transport = "stdio"
			case u.URL != "":
				u.Transport = "streamable"
			}
		}
		if u.DPoP == "" {
			u.DPoP = "optional"
		}
		if u.DPoPContentDigest == "" {
			u.DPoPContentDigest = "optional"
		}
		if u.ChallengeScopes == "" {
			u.ChallengeScopes = "recommended"
		}
		setDur(&u.SessionIdleTimeout, 30*time.Minute)
		setInt(&u.MaxSessions, 100)
		if u.Policy.Default == "" {
			u.Policy.Default = "allow"
		}
		for j := range u.Issuers {
			u.Issuers[j].applyDefaults()
		}
	}
}

func (i *Issuer) applyDefaults() {
	if len(i.Algorithms) == 0 {
		i.Algorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}
	}
	setDur(&i.Leeway, 30*time.Second)
	setDur(&i.MaxCacheTTL, 5*time.Minute)
	if i.Introspection != nil {
		setDur(&i.Introspection.CacheTTL, 60*time.Second)
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setInt64(p *int64, v int64) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}

// Endpoint is the public URL of the upstream's MCP endpoint.
func (u *Upstream) Endpoint(publicURL string) string {
	return strings.TrimSuffix(publicURL, "/") + u.Path
}

// IsLoopbackListen reports whether addr binds a loopback interface only.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
