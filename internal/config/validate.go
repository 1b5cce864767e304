package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
)

// reservedPaths are served by the gateway itself and cannot be mount paths.
var reservedPaths = []string{"/.well-known/", "/healthz", "/readyz", "/metrics", "/authorize", "/token", "/register", "/oauth/", "/par", "/revoke", "/introspect", "/jwks.json", "/login", "/consent", "/static/"}

// Validate checks the whole configuration and returns every problem at
// once, one per line, each naming the key and the fix.
func (g *Gateway) Validate() error {
	var v validator
	if err := validateReplica(g.State); err != nil {
		v.errs = append(v.errs, err)
	}
	if err := validateRedis(g.State.Redis); err != nil {
		v.errs = append(v.errs, err)
	}
	validateShutdown(g, &v)
	validateAudit(g.Audit, &v)

	validateFederatedTokens(g, &v)
	if _, _, err := net.SplitHostPort(g.Listen); err != nil {
		v.add("listen", "%q is not host:port: write e.g. 127.0.0.1:8080", g.Listen)
	}
	v.baseURL("public_url", g.PublicURL)
	if (g.TLS.CertFile == "") != (g.TLS.KeyFile == "") {
		v.add("tls", "set both cert_file and key_file, or neither")
	}
	if g.TLS.MinVersion != "1.2" && g.TLS.MinVersion != "1.3" {
		v.add("tls.min_version", "%q: use \"1.2\" or \"1.3\"", g.TLS.MinVersion)
	}
	for i, p := range g.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				v.add(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an IP address or CIDR", p)
			}
		}
	}
	for i, o := range g.AllowedOrigins {
		key := fmt.Sprintf("allowed_origins[%d]", i)
		if o == "*" {
			v.add(key, "\"*\" would let every web page call the gateway: list each origin (scheme://host[:port])")
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			v.add(key, "%q is not an origin: write scheme://host[:port] without a path", o)
		}
	}
	switch g.AuthorizationServer {
	case "", "builtin":
	default:
		v.add("authorization_server", "%q: use \"builtin\" or leave it unset", g.AuthorizationServer)
	}
	if g.AuthorizationServer == "builtin" {
		b := &g.Builtin
		switch b.Registration {
		case "", "open", "off":
		case "token":
			if b.RegistrationTokenEnv == "" {
				v.add("builtin.registration_token_env", "registration: token needs the name of the environment variable holding the initial access token")
			}
		default:
			v.add("builtin.registration", "%q: use open, token or off", b.Registration)
		}
		v.signIn("builtin.sign_in", &b.SignIn)
		v.authorizeLimits("builtin.authorize_limits", &b.AuthorizeLimits)
		if b.Store != "" && b.StoreEnv != "" {
			v.add("builtin.store", "set store (a bbolt file) or store_env (a PostgreSQL DSN), not both")
		}
		if fe := b.Federation; fe != nil {
			switch fe.Provider {
			case "", "oidc":
				if fe.Issuer == "" || fe.ClientID == "" {
					v.add("builtin.federation", "issuer and client_id are required (register %s/federation/callback at the provider)", g.PublicURL)
				} else {
					v.secureURL("builtin.federation.issuer", fe.Issuer)
				}
			case "github":
				if fe.ClientID == "" {
					v.add("builtin.federation.client_id", "required (a GitHub OAuth app with callback %s/federation/callback)", g.PublicURL)
				}
				for k, u := range map[string]string{"github_url": fe.GitHubURL, "github_api_url": fe.GitHubAPIURL} {
					if u != "" {
						v.secureURL("builtin.federation."+k, u)
					}
				}
			default:
				v.add("builtin.federation.provider", "%q: use oidc or github", fe.Provider)
			}
			if (fe.ClientSecretEnv == "") == (fe.ClientSecretFile == "") {
				v.add("builtin.federation", "set exactly one of client_secret_env and client_secret_file")
			}
		}
		for i, c := range b.Clients {
			key := fmt.Sprintf("builtin.clients[%d]", i)
			if c.ID == "" {
				v.add(key+".id", "a client needs an id")
			}
			if c.SecretEnv != "" && c.SecretFile != "" {
				v.add(key, "set secret_env or secret_file, not both")
			}
			for _, gt := range c.GrantTypes {
				if gt != "authorization_code" && gt != "refresh_token" && gt != "client_credentials" && gt != GrantTokenExchange {
					v.add(key+".grant_types", "%q: use authorization_code, refresh_token, client_credentials or "+GrantTokenExchange, gt)
				}
				if gt == "client_credentials" && len(c.Scopes) == 0 {
					v.add(key+".scopes", "a client with the client credentials grant needs the list of scopes it may get")
				}
			}
		}
		v.builtinGrants(b)
		v.builtinExchange(b)
		v.enterprise(b, upstreamResources(g))
	} else if g.Builtin.UsersFile != "" || len(g.Builtin.Clients) > 0 || g.Builtin.Store != "" {
		v.add("builtin", "settings for the built-in authorization server need authorization_server: builtin")
	}
	v.dpopNonces(&g.DPoPNonces)
	for i := range g.Issuers {
		v.issuer(fmt.Sprintf("issuers[%d]", i), &g.Issuers[i])
	}
	if len(g.Upstreams) == 0 {
		v.add("upstreams", "no upstream: give --upstream URL, a command after --, or an upstreams list in the config file")
	}
	paths := map[string]int{}
	for i := range g.Upstreams {
		u := &g.Upstreams[i]
		key := fmt.Sprintf("upstreams[%d]", i)
		v.upstream(key, u, g)
		if j, dup := paths[u.Path]; dup {
			v.add(key+".path", "%q is also the path of upstreams[%d]; give each upstream its own path", u.Path, j)
		}
		paths[u.Path] = i
	}
	v.identityAssertions(g)
	l := g.Limits
	if l.MaxBodyBytes < 0 || l.MaxHeaderBytes < 0 || l.MaxJSONDepth < 0 || l.MaxStreamsPerSubject < 0 || l.Burst < 0 || l.UpstreamTimeout.Duration < 0 {
		v.add("limits", "limits must be positive")
	}
	if l.MaxSessionsPerSubject < 0 {
		v.add("limits.max_sessions_per_subject", "%d: must be positive (default 16)", l.MaxSessionsPerSubject)
	}
	if l.MaxTasksPerSubject < 0 {
		v.add("limits.max_tasks_per_subject", "%d: must be positive (default 256)", l.MaxTasksPerSubject)
	}
	if l.MaxTasks < 0 {
		v.add("limits.max_tasks", "%d: must be positive (default 100000)", l.MaxTasks)
	} else if l.MaxTasks > 0 && l.MaxTasksPerSubject > l.MaxTasks {
		v.add("limits.max_tasks_per_subject", "%d is more than limits.max_tasks (%d)", l.MaxTasksPerSubject, l.MaxTasks)
	}
	if l.TaskTTLMax.Duration < 0 {
		v.add("limits.task_ttl_max", "must be positive, e.g. 24h")
	}
	if l.MaxHTTPSessionsPerSubject < 0 {
		v.add("limits.max_http_sessions_per_subject", "%d: must be positive (default 1024)", l.MaxHTTPSessionsPerSubject)
	}
	if l.BodyReadTimeout.Duration < 0 {
		v.add("limits.body_read_timeout", "must be positive, e.g. 20s")
	}
	if l.BodyBytesInFlight < 0 {
		v.add("limits.body_bytes_in_flight", "must be positive, e.g. 67108864 (64 MiB)")
	} else if l.BodyBytesInFlight > 0 && l.BodyBytesInFlight < l.MaxBodyBytes {
		v.add("limits.body_bytes_in_flight", "%d is less than limits.max_body_bytes (%d): no body of the maximum size could ever be read", l.BodyBytesInFlight, l.MaxBodyBytes)
	}
	if l.MaxFormBytes < 0 {
		v.add("limits.max_form_bytes", "must be positive, e.g. 65536")
	}
	if l.DPoPReplayEntries < 0 {
		v.add("limits.dpop_replay_entries", "%d: must be positive (default 200000)", l.DPoPReplayEntries)
	}
	if l.DPoPReplayPerSubject < 0 {
		v.add("limits.dpop_replay_per_subject", "%d: must be positive (default 10000)", l.DPoPReplayPerSubject)
	} else if l.DPoPReplayEntries > 0 && l.DPoPReplayPerSubject > l.DPoPReplayEntries {
		v.add("limits.dpop_replay_per_subject", "%d is more than limits.dpop_replay_entries (%d): one subject could fill the store for everyone", l.DPoPReplayPerSubject, l.DPoPReplayEntries)
	}
	if l.FormBytesInFlight < 0 {
		v.add("limits.form_bytes_in_flight", "must be positive, e.g. 8388608 (8 MiB)")
	} else if l.FormBytesInFlight > 0 && l.FormBytesInFlight < l.MaxFormBytes {
		v.add("limits.form_bytes_in_flight", "%d is less than limits.max_form_bytes (%d): no form of the maximum size could ever be read", l.FormBytesInFlight, l.MaxFormBytes)
	}
	if l.MaxConnections < 1 {
		v.add("limits.max_connections", "%d: must be at least 1 (default 2048)", l.MaxConnections)
	}
	if l.MaxConnectionsPerAddress < -1 || l.MaxConnectionsPerAddress == 0 {
		v.add("limits.max_connections_per_address", "%d: must be at least 1, or -1 for no per-address cap (default 128)", l.MaxConnectionsPerAddress)
	} else if l.MaxConnectionsPerAddress > l.MaxConnections && l.MaxConnections >= 1 {
		v.add("limits.max_connections_per_address", "%d is more than limits.max_connections (%d)", l.MaxConnectionsPerAddress, l.MaxConnections)
	}
	if l.IdleTimeout.Duration < 0 {
		v.add("limits.idle_timeout", "must be positive, e.g. 60s")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(g.Log.Level)) {
		v.add("log.level", "%q: use debug, info, warn or error", g.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, strings.ToLower(g.Log.Format)) {
		v.add("log.format", "%q: use text or json", g.Log.Format)
	}
	if g.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(g.Metrics.Listen); err != nil {
			v.add("metrics.listen", "%q is not host:port", g.Metrics.Listen)
		}
	}
	return v.err()
}

type validator struct{ errs []error }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) baseURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(key, "%q must be an absolute http(s) URL like https://mcp.example.com", s)
		return
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		v.add(key, "%q must not have a path, query or fragment: mount paths are set per upstream", s)
	}
}

// secureURL requires https, except for loopback hosts.
func (v *validator) secureURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		v.add(key, "%q must be an absolute https URL", s)
		return
	}
	if u.Scheme == "http" && !IsLoopbackListen(u.Hostname()) {
		v.add(key, "%q must use https (http is allowed for loopback addresses only)", s)
	}
	if u.Fragment != "" {
		v.add(key, "%q must not have a fragment", s)
	}
}

func (v *validator) issuer(key string, is *Issuer) {
	if is.Issuer == "" {
		v.add(key+".issuer", "required: the exact issuer identifier of the authorization server")
	} else {
		v.secureURL(key+".issuer", is.Issuer)
	}
	if is.JWKSURI != "" {
		v.secureURL(key+".jwks_uri", is.JWKSURI)
	}
	for j, a := range is.Algorithms {
		k := fmt.Sprintf("%s.algorithms[%d]", key, j)
		switch {
		case strings.EqualFold(a, "none"):
			v.add(k, "\"none\" means unsigned tokens: remove it")
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			v.add(k, "%q is a symmetric algorithm; use an asymmetric one (RS256, ES256, …)", a)
		case !slices.Contains([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}, a):
			v.add(k, "%q is not a supported algorithm: use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA", a)
		}
	}
	if is.ScopeClaim != "" && is.ScopeClaim != "scope" && is.ScopeClaim != "scp" {
		v.add(key+".scope_claim", "%q: use scope or scp", is.ScopeClaim)
	}
	if in := is.Introspection; in != nil {
		if in.Endpoint != "" {
			v.secureURL(key+".introspection.endpoint", in.Endpoint)
		}
		if in.ClientID == "" {
			v.add(key+".introspection.client_id", "required: the gateway authenticates to the introspection endpoint")
		}
		if (in.ClientSecretFile == "") == (in.ClientSecretEnv == "") {
			v.add(key+".introspection", "set exactly one of client_secret_file or client_secret_env")
		}
	}
}

func (v *validator) upstream(key string, u *Upstream, g *Gateway) {
	switch {
	case u.Path == "":
		v.add(key+".path", "required when there are several upstreams, e.g. /github/mcp")
	case !strings.HasPrefix(u.Path, "/") || strings.HasSuffix(u.Path, "/") || path.Clean(u.Path) != u.Path || strings.ContainsAny(u.Path, "?#*{} "):
		v.add(key+".path", "%q must be a clean absolute path like /mcp (no trailing slash, query or wildcard)", u.Path)
	default:
		for _, r := range reservedPaths {
			if u.Path == strings.TrimSuffix(r, "/") || strings.HasPrefix(u.Path, r) || strings.HasPrefix(u.Path+"/", r) {
				v.add(key+".path", "%q collides with the gateway's own %s; choose another path", u.Path, r)
			}
		}
	}
	if ru, err := url.Parse(u.Resource); err != nil || !ru.IsAbs() || ru.Fragment != "" {
		v.add(key+".resource", "%q must be an absolute URI without a fragment (RFC 8707)", u.Resource)
	}
	hasURL, hasCmd := u.URL != "", len(u.Command) > 0
	if hasURL == hasCmd {
		v.add(key, "set exactly one of url or command")
	}
	switch u.Transport {
	case "streamable", "sse":
		if !hasURL {
			v.add(key+".transport", "%q needs url", u.Transport)
		}
	case "stdio":
		if !hasCmd {
			v.add(key+".transport", "stdio needs command")
		}
	default:
		v.add(key+".transport", "%q: use streamable, sse or stdio", u.Transport)
	}
	if hasURL {
		if pu, err := url.Parse(u.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			v.add(key+".url", "%q must be an absolute http(s) URL", u.URL)
		}
	}
	if !slices.Contains([]string{"off", "optional", "required"}, u.DPoP) {
		v.add(key+".dpop", "%q: use off, optional or required", u.DPoP)
	}
	if u.DPoPNonce && u.DPoP == "off" {
		v.add(key+".dpop_nonce", "needs dpop optional or required")
	}
	if !slices.Contains([]string{"optional", "required"}, u.DPoPContentDigest) {
		v.add(key+".dpop_content_digest", "%q: use optional or required", u.DPoPContentDigest)
	} else if u.DPoPContentDigest == "required" && u.DPoP == "off" {
		v.add(key+".dpop_content_digest", "required needs dpop optional or required")
	}
	if !slices.Contains([]string{"minimum", "recommended", "extended"}, u.ChallengeScopes) {
		v.add(key+".challenge_scopes", "%q: use minimum, recommended or extended", u.ChallengeScopes)
	}
	if slices.Contains(u.ScopesSupported, "offline_access") {
		v.add(key+".scopes_supported", "remove offline_access: it is a matter between client and authorization server, not a resource scope")
	}
	if len(u.Issuers) == 0 && len(g.Issuers) == 0 && g.AuthorizationServer != "builtin" {
		v.add(key+".issuers", "no trusted issuer: set --issuer, issuers, this upstream's issuers, or authorization_server: builtin")
	}
	for i := range u.Issuers {
		v.issuer(fmt.Sprintf("%s.issuers[%d]", key, i), &u.Issuers[i])
	}
	if u.MaxSessions < 0 || u.SessionIdleTimeout.Duration < 0 {
		v.add(key, "max_sessions and session_idle_timeout must be positive")
	}
	if a := u.UpstreamAuth; a != nil {
		v.upstreamAuth(key+".upstream_auth", a)
	}
	v.policy(key+".policy", &u.Policy)
}

// upstreamAuth checks the static header (when any of its fields is set)
// and each per-caller mode.
func (v *validator) upstreamAuth(key string, a *UpstreamAuth) {
	perCaller := a.OAuth != nil || a.TokenExchange != nil || a.IdentityAssertion != nil || a.FederatedToken != nil
	if a.Header != "" || a.ValueEnv != "" || a.ValueFile != "" || !perCaller {
		if a.Header == "" {
			v.add(key+".header", "required, e.g. Authorization")
		}
		if (a.ValueEnv == "") == (a.ValueFile == "") {
			v.add(key, "set exactly one of value_env or value_file")
		}
	}
	v.upstreamOAuth(key+".oauth", a.OAuth)
	v.tokenExchange(key+".token_exchange", a.TokenExchange)
	v.identityAssertion(key+".identity_assertion", a.IdentityAssertion)
	v.credentialHeaders(key, a)
}

// credentialHeaders refuses two credentials written to the same upstream
// header: the later would silently replace the earlier (say, a caller's
// exchanged token replacing a connected account's), so the upstream would
// see another credential than the one configured. A mode that supplies a
// command upstream's child (child_env) writes no header.
func (v *validator) credentialHeaders(key string, a *UpstreamAuth) {
	writers := map[string]string{}
	add := func(mode, header string) {
		h := http.CanonicalHeaderKey(header)
		if prev, ok := writers[h]; ok {
			v.add(key, "%s and %s both send the upstream header %s: the second would replace the first; give one of them another header", prev, mode, h)
			return
		}
		writers[h] = mode
	}
	if a.Header != "" {
		add("header", a.Header)
	}
	if a.OAuth != nil {
		add("oauth", "Authorization")
	}
	if a.ChildEnv == "" {
		if a.TokenExchange != nil {
			add("token_exchange", a.TokenExchange.HeaderName())
		}
		if f := a.FederatedToken; f != nil {
			add("federated_token", cmp.Or(f.Header, "Authorization"))
		}
	}
	if a.IdentityAssertion != nil {
		add("identity_assertion", a.IdentityAssertion.HeaderName())
	}
}

func (v *validator) policy(key string, p *Policy) {
	if p.Default != "allow" && p.Default != "deny" {
		v.add(key+".default", "%q: use allow or deny", p.Default)
	}
	for kind, rules := range map[string][]Rule{"methods": p.Methods, "tools": p.Tools, "prompts": p.Prompts, "resources": p.Resources} {
		for i, r := range rules {
			k := fmt.Sprintf("%s.%s[%d]", key, kind, i)
			if r.Match == "" {
				v.add(k+".match", "required: a name or glob (* matches any run of characters, ? one character)")
			}
			if r.Deny && (len(r.Scopes) > 0 || len(r.Claims) > 0) {
				v.add(k, "a deny rule refuses everyone: drop scopes and claims, or drop deny")
			}
			v.claims(k+".claims", r.Claims)
		}
	}
	v.claims(key+".claims", p.Claims)
}

func (v *validator) claims(key string, cs []ClaimCondition) {
	for i, c := range cs {
		k := fmt.Sprintf("%s[%d]", key, i)
		if c.Claim == "" {
			v.add(k+".claim", "required: the claim name, e.g. email or groups")
		}
		if len(c.AnyOf) == 0 && len(c.Suffix) == 0 {
			v.add(k, "set any_of or suffix")
		}
	}
}
