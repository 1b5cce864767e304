// Package config holds mcpgate's typed configuration: plain structs whose
// fields document their defaults, loading from YAML with environment and flag
// overrides, and validation whose errors name the key and the fix.
//
// The package reads files and nothing else; it never touches the network.
package config

import "time"

// Gateway is the configuration of `mcpgate serve`.
type Gateway struct {
	// Listen is the address the gateway binds. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// PublicURL is the externally visible base URL (scheme://host[:port], no
	// path) used in metadata, challenges, resource identifiers and DPoP htu
	// checks. Default "http://" + Listen.
	PublicURL string `yaml:"public_url"`
	// TLS enables HTTPS on Listen when both files are set.
	TLS TLS `yaml:"tls"`
	// TrustedProxies are CIDRs (or single IPs) whose X-Forwarded-* headers are
	// believed. Default none: forwarded headers are ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AllowedOrigins lists browser origins (scheme://host[:port]) allowed to
	// call the gateway. A request whose Origin is not listed and is not the
	// public URL's origin gets 403. "*" is refused.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHosts adds Host header values accepted in addition to the public
	// URL's host. Host is validated always when Listen is a loopback address.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AuthorizationServer is "" (external IdPs only) or "builtin".
	AuthorizationServer string `yaml:"authorization_server"`
	// Builtin configures the built-in authorization server.
	Builtin Builtin `yaml:"builtin"`
	// Issuers are the default trusted issuers of every upstream that lists
	// none of its own.
	Issuers []Issuer `yaml:"issuers"`
	// Upstreams are the protected MCP servers, each at its own mount path.
	Upstreams []Upstream `yaml:"upstreams"`
	// DPoPNonces configures the server-issued DPoP nonces of upstreams with
	// dpop_nonce and of the built-in authorization server with
	// builtin.dpop_nonce.
	DPoPNonces DPoPNonces `yaml:"dpop_nonces"`
	Limits     Limits     `yaml:"limits"`
	Log        Log        `yaml:"log"`
	Audit      Audit      `yaml:"audit"`
	Metrics    Metrics    `yaml:"metrics"`
	// ShutdownTimeout bounds graceful shutdown after the drain: the wait
	// for in-flight requests. Default 10s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// ShutdownDrain is how long a replica keeps serving after SIGTERM with
	// /readyz failing, so load balancers stop sending to it before it
	// stops accepting. Default 0 (no drain).
	ShutdownDrain Duration `yaml:"shutdown_drain"`
	// State says where replica-shared state lives (state.go).
	State State `yaml:"state"`
	// IdentityAssertionKeys are the keys that sign identity assertions
	// (upstream_auth.identity_assertion; upstream_assertion.go).
	IdentityAssertionKeys IdentityAssertionKeys `yaml:"identity_assertion_keys"`
}

// TLS configures HTTPS listening.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is "1.2" or "1.3". Default "1.2".
	MinVersion string `yaml:"min_version"`
}

// Issuer is one trusted authorization server.
type Issuer struct {
	// Issuer is the exact issuer identifier (the iss claim and the RFC 8414
	// issuer). Required.
	Issuer string `yaml:"issuer"`
	// JWKSURI overrides discovery of the key set. Default: the jwks_uri of the
	// issuer's RFC 8414 metadata, else of its OpenID discovery document.
	JWKSURI string `yaml:"jwks_uri"`
	// Algorithms is the JWS algorithm allow-list. Default
	// [RS256, PS256, ES256, ES384, EdDSA]. "none" and HS* are refused.
	Algorithms []string `yaml:"algorithms"`
	// Audiences are extra accepted aud values besides the upstream's resource
	// identifier (for IdPs that cannot put the resource in aud). Default none.
	Audiences []string `yaml:"audiences"`
	// AllowMissingExp accepts tokens without exp. Default false.
	AllowMissingExp bool `yaml:"allow_missing_exp"`
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 30s.
	Leeway Duration `yaml:"leeway"`
	// MaxCacheTTL bounds how long a verified token stays cached. Default 5m.
	MaxCacheTTL Duration `yaml:"max_cache_ttl"`
	// ScopeClaim names the claim that carries scopes: "scope" (space
	// separated, RFC 9068) or "scp" (array or string). Default: both tried.
	ScopeClaim string `yaml:"scope_claim"`
	// Introspection enables RFC 7662 for opaque (non-JWT) tokens.
	Introspection *Introspection `yaml:"introspection"`
	// RequireATJWT demands the RFC 9068 header "typ": "at+jwt" on this
	// issuer's JWT access tokens. Default false (many IdPs send "JWT" or
	// no typ), but always true for the built-in authorization server, which
	// issues at+jwt. Whatever the setting, a JWT whose typ names another
	// kind of token (an ID token, logout token, DPoP proof, …) is refused.
	RequireATJWT bool `yaml:"require_at_jwt"`
}

// DPoPNonces configures stateless DPoP nonces (RFC 9449 §8, §9; the MCP
// DPoP profile's "encrypted timestamp" nonce): an AES-256-GCM sealed issue
// time that every replica holding the same key accepts, with no shared
// state. Key changes take effect at restart (rotate replica by replica:
// new key in key_file, the old one in previous_key_file).
type DPoPNonces struct {
	// KeyFile or KeyEnv hold the nonce secret: at least 32 bytes (e.g. the
	// output of `openssl rand -base64 48`), the same on every replica.
	// Default none: a random key made at start, so only this process
	// accepts its nonces and a restart invalidates them.
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// PreviousKeyFile or PreviousKeyEnv hold the secret before the last
	// rotation: nonces sealed with it are still accepted until they
	// expire; no new nonce uses it. Default none.
	PreviousKeyFile string `yaml:"previous_key_file"`
	PreviousKeyEnv  string `yaml:"previous_key_env"`
	// Lifetime is how long a nonce is accepted after it was issued (and so
	// how long a replica remembers a jti). Default 5m; 30s to 1h.
	Lifetime Duration `yaml:"lifetime"`
}

// Builtin configures the built-in authorization server (issuer = the
// public URL).
type Builtin struct {
	// Store is the bbolt file holding clients, grants, refresh tokens and
	// signing keys. Default <user config dir>/mcpgate/authserver.db.
	Store string `yaml:"store"`
	// StoreEnv names an environment variable holding a PostgreSQL DSN
	// (postgres://…): the state is then shared by every gateway replica
	// that uses the same database.
	StoreEnv string `yaml:"store_env"`
	// UsersFile is the password file ("name:hash" lines, argon2id or
	// bcrypt; mcpgate hash-password makes hashes). Required unless the
	// server only serves machine clients.
	UsersFile string `yaml:"users_file"`
	// RequirePAR refuses authorization requests that were not pushed.
	RequirePAR bool `yaml:"require_par"`
	// DPoPNonce makes the token and PAR endpoints demand a server-issued
	// DPoP nonce (RFC 9449 §8) in every DPoP proof (see dpop_nonces).
	// Default false.
	DPoPNonce bool `yaml:"dpop_nonce"`
	// Registration: "open" (default), "token" (initial access token from
	// RegistrationTokenEnv) or "off".
	Registration         string `yaml:"registration"`
	RegistrationTokenEnv string `yaml:"registration_token_env"`
	// AccessTokenTTL default 10m; RefreshTokenTTL default 720h.
	AccessTokenTTL  Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL Duration `yaml:"refresh_token_ttl"`
	// KeyRotation: how long a signing key signs. Default 720h.
	KeyRotation Duration `yaml:"key_rotation"`
	// Clients are operator-configured clients (machines using the client
	// credentials grant, or pre-registered apps).
	Clients []BuiltinClient `yaml:"clients"`
	// ExchangeResources are resources tokens are issued for only by the
	// token exchange grant (builtin_exchange.go).
	ExchangeResources []ExchangeResource `yaml:"exchange_resources"`
	// Federation signs users in at an upstream OpenID provider instead of
	// the local password form.
	Federation *Federation `yaml:"federation"`

	// Grants, introspection and registration limits.

	// DefaultScopes: what an authorization request that names no scope
	// gets (those of them the resource and client allow). Default none —
	// never every scope of the resource.
	DefaultScopes []string `yaml:"default_scopes"`
	// RegistrationClientCredentialsScopes lets clients registered with the
	// initial access token (registration: token) use the client
	// credentials grant, for these scopes only. Default empty: no
	// self-registered client gets the client credentials grant.
	RegistrationClientCredentialsScopes []string `yaml:"registration_client_credentials_scopes"`
	// IntrospectionClients: the configured confidential clients (ids in
	// clients) that may call the introspection endpoint. Default empty:
	// nobody may; self-registered clients never.
	IntrospectionClients []string `yaml:"introspection_clients"`
	// RegistrationLimits bound Dynamic Client Registration.
	RegistrationLimits RegistrationLimits `yaml:"registration_limits"`
	// SignIn bounds password checking and throttles failed sign-ins.
	SignIn BuiltinSignIn `yaml:"sign_in"`
	// AuthorizeLimits bound the authorization requests /authorize and
	// /par keep (see BuiltinAuthorizeLimits).
	AuthorizeLimits BuiltinAuthorizeLimits `yaml:"authorize_limits"`
	// TrustedIdPs: enterprise IdPs whose ID-JAGs are accepted
	// (Enterprise-Managed Authorization; see docs/enterprise.md).
	TrustedIdPs []TrustedIdP `yaml:"trusted_idps"`
	// TrustedWorkloadIssuers: workload JWT issuers (Workload Identity
	// Federation; see docs/enterprise.md).
	TrustedWorkloadIssuers []WorkloadIssuer `yaml:"trusted_workload_issuers"`
}

// RegistrationLimits bound Dynamic Client Registration; 0 (unset) takes
// the default.
type RegistrationLimits struct {
	// PerAddressPerHour: registrations per client address (IPv6: /64) in
	// any hour. Default 10.
	PerAddressPerHour int `yaml:"per_address_per_hour"`
	// PerHour: registrations from all addresses in any hour. Default 100.
	PerHour int `yaml:"per_hour"`
	// MaxClients: registered clients kept at once. Default 5000.
	MaxClients int `yaml:"max_clients"`
	// UnusedClientTTL: a registered client that completes no grant in this
	// time is deleted. Default 24h.
	UnusedClientTTL Duration `yaml:"unused_client_ttl"`
	// MaxBodyBytes: the registration request. Default 16384.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxNameChars: client_name in characters. Default 100.
	MaxNameChars int `yaml:"max_name_chars"`
	// MaxURIBytes: each URI of the metadata. Default 1024.
	MaxURIBytes int `yaml:"max_uri_bytes"`
	// MaxRedirectURIs: entries of redirect_uris. Default 10.
	MaxRedirectURIs int `yaml:"max_redirect_uris"`
}

// Federation configures the upstream OpenID provider of the built-in
// authorization server. Register PublicURL + "/federation/callback" as its
// redirect URI.
type Federation struct {
	// Provider is "oidc" (default, any OpenID Connect provider) or
	// "github" (GitHub OAuth; GitHubURL/GitHubAPIURL for Enterprise).
	Provider         string   `yaml:"provider"`
	GitHubURL        string   `yaml:"github_url"`
	GitHubAPIURL     string   `yaml:"github_api_url"`
	Issuer           string   `yaml:"issuer"`
	ClientID         string   `yaml:"client_id"`
	ClientSecretEnv  string   `yaml:"client_secret_env"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	Scopes           []string `yaml:"scopes"`
	// SubjectClaim is the ID token claim used as the user name: sub
	// (default), email, preferred_username, …
	SubjectClaim string `yaml:"subject_claim"`
	// Tokens keeps the provider's tokens per user, encrypted, for
	// upstream_auth.federated_token (upstream_federated.go).
	Tokens *FederatedTokens `yaml:"tokens"`
}

// BuiltinClient is a configured client of the built-in server.
type BuiltinClient struct {
	ID string `yaml:"id"`
	// SecretEnv or SecretFile hold a confidential client's secret.
	SecretEnv    string   `yaml:"secret_env"`
	SecretFile   string   `yaml:"secret_file"`
	Name         string   `yaml:"name"`
	RedirectURIs []string `yaml:"redirect_uris"`
	GrantTypes   []string `yaml:"grant_types"`
	Scopes       []string `yaml:"scopes"`
	// DPoPBoundAccessTokens (RFC 9449 §5.2): the client always uses DPoP,
	// so its token requests without a valid DPoP proof are refused.
	// Default false.
	DPoPBoundAccessTokens bool `yaml:"dpop_bound_access_tokens"`
	// JWKSFile or JWKSURI hold the public keys of a client that
	// authenticates with private_key_jwt (RFC 7523 §2.2) instead of a
	// secret.
	JWKSFile string `yaml:"jwks_file"`
	JWKSURI  string `yaml:"jwks_uri"`
}

// Introspection configures RFC 7662 token introspection.
type Introspection struct {
	// Endpoint is the introspection URL. Default: introspection_endpoint of
	// the issuer's metadata.
	Endpoint string `yaml:"endpoint"`
	// ClientID authenticates the gateway to the AS (client_secret_basic).
	ClientID string `yaml:"client_id"`
	// ClientSecretFile or ClientSecretEnv hold the secret; never inline.
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// CacheTTL bounds caching of an active answer. Default 60s.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// Upstream is one protected MCP server.
type Upstream struct {
	// Name identifies the upstream in logs, metrics and audit. Default: the
	// path with slashes replaced.
	Name string `yaml:"name"`
	// Path is the mount path of the MCP endpoint, e.g. "/github/mcp".
	// Default "/mcp" when there is a single upstream.
	Path string `yaml:"path"`
	// Resource is the RFC 8707 resource identifier. Default PublicURL + Path.
	Resource string `yaml:"resource"`
	// URL is the upstream MCP endpoint for transport streamable or sse.
	URL string `yaml:"url"`
	// Transport is "streamable" (default with url), "sse" (legacy HTTP+SSE
	// upstream), or "stdio" (default with command).
	Transport string `yaml:"transport"`
	// Command is argv of a stdio server; run without a shell, one process per
	// MCP session.
	Command []string `yaml:"command"`
	// Env sets environment variables for the command. The child gets only
	// PATH, HOME, LANG and these, plus InheritEnv.
	Env map[string]string `yaml:"env"`
	// InheritEnv names gateway environment variables passed to the child.
	InheritEnv []string `yaml:"inherit_env"`
	// Dir is the command's working directory.
	Dir string `yaml:"dir"`
	// SessionIdleTimeout reaps idle sessions (and their children). Default 30m.
	SessionIdleTimeout Duration `yaml:"session_idle_timeout"`
	// MaxSessions bounds the upstream connections the gateway keeps for
	// this upstream (stdio children and legacy SSE connections, of every
	// protocol revision) and, on stdio and sse upstreams, the bound
	// sessions. Default 100.
	MaxSessions int `yaml:"max_sessions"`
	// Issuers overrides the top-level trusted issuers for this upstream.
	Issuers []Issuer `yaml:"issuers"`
	// ScopesSupported is published in the resource metadata: the minimal
	// set for basic use. Challenges name the subset ChallengeScopes picks.
	// offline_access is refused.
	ScopesSupported []string `yaml:"scopes_supported"`
	// ChallengeScopes chooses which scopes the gateway's challenges name,
	// after the approaches of the MCP security best practices (§Scope
	// Minimization, 2026-07-28). "minimum": only the scopes the request
	// needs (policy.required_scopes, plus the operation's when a
	// 2026-07-28 request names it in Mcp-Method/Mcp-Name). "recommended"
	// (default): those plus the related basic scopes, the scopes_supported
	// no policy rule reserves for privileged operations. "extended": those
	// plus every scope in scopes_supported (privileged ones up front).
	// Privileged scopes reach a client through 403 insufficient_scope
	// step-up unless this is "extended".
	ChallengeScopes string `yaml:"challenge_scopes"`
	// ScopeHierarchy maps a broad scope to the narrower scopes it implies,
	// e.g. {"mcp:admin": ["mcp:write", "mcp:read"]}.
	ScopeHierarchy map[string][]string `yaml:"scope_hierarchy"`
	// DPoP is "off", "optional" (default) or "required".
	DPoP string `yaml:"dpop"`
	// DPoPNonce makes the gateway demand server-issued DPoP nonces.
	DPoPNonce bool `yaml:"dpop_nonce"`
	// DPoPContentDigest is "optional" (default) or "required". Optional:
	// standard RFC 9449 proofs are accepted, as the MCP DPoP profile
	// (SEP-1932) defines no body digest; a proof that carries the older
	// profile's content_digest claim still has it checked against the body.
	// Required: every POST proof must carry content_digest (refused from
	// the headers, before the body is read, when it does not).
	DPoPContentDigest string `yaml:"dpop_content_digest"`
	// ResourceName and ResourceDocumentation go into resource metadata.
	ResourceName          string `yaml:"resource_name"`
	ResourceDocumentation string `yaml:"resource_documentation"`
	Policy                Policy `yaml:"policy"`
	// UpstreamAuth adds a credential of the gateway's own to upstream requests.
	UpstreamAuth *UpstreamAuth `yaml:"upstream_auth"`
	// IdentityHeaders names headers that carry the caller's identity to the
	// upstream. Client-sent headers of these names are always stripped.
	IdentityHeaders IdentityHeaders `yaml:"identity_headers"`
}

// UpstreamAuth is how the gateway authenticates to the upstream: a static
// header of its own (Header with ValueEnv or ValueFile), and/or a
// credential per caller (the modes below, each in a file of its own:
// upstream_oauth.go, upstream_exchange.go, upstream_assertion.go).
type UpstreamAuth struct {
	// Header is the header name, e.g. "Authorization".
	Header string `yaml:"header"`
	// ValueEnv or ValueFile holds the header value; never inline.
	ValueEnv  string `yaml:"value_env"`
	ValueFile string `yaml:"value_file"`
	// OAuth makes the gateway an OAuth client of the upstream's
	// authorization server, with a connected account per user.
	OAuth *UpstreamOAuth `yaml:"oauth"`
	// TokenExchange exchanges the caller's token (RFC 8693) for one with
	// the upstream's audience.
	TokenExchange *TokenExchange `yaml:"token_exchange"`
	// IdentityAssertion sends a short-lived JWT the gateway signs.
	IdentityAssertion *IdentityAssertion `yaml:"identity_assertion"`
	// FederatedToken sends the caller's token from the built-in server's
	// federated identity provider (upstream_federated.go).
	FederatedToken *FederatedToken `yaml:"federated_token"`
	// ChildEnv names the environment variable a command upstream's child
	// gets the caller's per-caller credential in (upstream_federated.go).
	ChildEnv string `yaml:"child_env"`
}

// IdentityHeaders names the identity headers sent upstream; empty disables one.
type IdentityHeaders struct {
	Subject  string `yaml:"subject"`
	ClientID string `yaml:"client_id"`
	Scopes   string `yaml:"scopes"`
	Issuer   string `yaml:"issuer"`
}

// Policy is the per-upstream authorization policy.
type Policy struct {
	// Default is "allow" (default) or "deny": the decision for a method, tool,
	// prompt or resource that no rule matches (scopes in RequiredScopes and
	// Claims still apply).
	Default string `yaml:"default"`
	// RequiredScopes are needed for any request to this upstream.
	RequiredScopes []string `yaml:"required_scopes"`
	// Claims must all hold for any request to this upstream.
	Claims []ClaimCondition `yaml:"claims"`
	// Methods, Tools, Prompts and Resources are rule lists; the first rule
	// whose pattern matches decides. Patterns are globs (* and ?).
	Methods   []Rule `yaml:"methods"`
	Tools     []Rule `yaml:"tools"`
	Prompts   []Rule `yaml:"prompts"`
	Resources []Rule `yaml:"resources"`
}

// Rule grants access to what Match matches to callers with all Scopes and
// all Claims; Deny refuses it to everyone.
type Rule struct {
	Match  string           `yaml:"match"`
	Scopes []string         `yaml:"scopes"`
	Claims []ClaimCondition `yaml:"claims"`
	Deny   bool             `yaml:"deny"`
}

// ClaimCondition holds when the claim (a string or an array of strings)
// has a value in AnyOf, or a string value ending with one of Suffix (for
// email domains: "@example.com").
type ClaimCondition struct {
	Claim  string   `yaml:"claim"`
	AnyOf  []string `yaml:"any_of"`
	Suffix []string `yaml:"suffix"`
}

// Limits bound what one client can make the gateway do.
type Limits struct {
	// MaxBodyBytes bounds a request body. Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxJSONDepth bounds JSON nesting of a request. Default 64.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxStreamsPerSubject bounds concurrent SSE streams per subject. Default 16.
	MaxStreamsPerSubject int `yaml:"max_streams_per_subject"`
	// RequestsPerSecond and Burst set a token bucket per subject. Default 20/s,
	// burst 40. A negative rate disables the limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	// UpstreamTimeout bounds a JSON (non-stream) upstream reply, and the
	// wait of a request on a stdio or legacy SSE upstream for its answer
	// (or, on an SSE reply, its next progress notification). Default 60s.
	UpstreamTimeout Duration `yaml:"upstream_timeout"`

	// Session budgets (per upstream).

	// MaxSessionsPerSubject bounds what one subject holds on one upstream:
	// the upstream connections the gateway keeps (stdio children, legacy
	// SSE connections), whatever the protocol revision, and the bound MCP
	// sessions of stdio and sse upstreams (Streamable HTTP upstreams:
	// MaxHTTPSessionsPerSubject). On an upstream with max_sessions it is at most half of
	// max_sessions (at least 1), so one subject cannot take every session.
	// Beyond it, initialize (and a 2026-07-28 request or a 2024-11-05
	// stream) gets 429 with Retry-After. Default 16.
	//
	// A subject at its share does not lock itself out: its least recently
	// used idle session (no request in flight, no open stream) is ended to
	// make room, and only a subject whose every session is busy gets 429.
	MaxSessionsPerSubject int `yaml:"max_sessions_per_subject"`

	// Task budgets (per upstream). The gateway binds each task an upstream
	// creates (Tasks extension, SEP-2663; 2025-11-25 tasks) to the caller
	// whose tools/call created it; only that caller may get, update,
	// cancel or list it.

	// MaxTasksPerSubject bounds the task bindings one subject (with one
	// client) holds on one upstream. Beyond it a tools/call that creates a
	// task is answered with an error instead of the task. Default 256.
	MaxTasksPerSubject int `yaml:"max_tasks_per_subject"`
	// MaxTasks bounds the task bindings of one upstream over all subjects.
	// Default 100000.
	MaxTasks int `yaml:"max_tasks"`
	// TaskTTLMax caps how long a task binding lives: the task's own ttlMs
	// (ttl in 2025-11-25) when shorter, this when the task has none or a
	// longer one. An expired binding is unknown to the gateway. Default 24h.
	TaskTTLMax Duration `yaml:"task_ttl_max"`

	// MaxHTTPSessionsPerSubject is a subject's share of the session binding
	// table of a Streamable HTTP upstream (where a binding costs the
	// gateway memory only; one service account may run many processes).
	// Beyond it the subject's least recently used idle session is evicted
	// (its client gets 404 and initializes again; the gateway sends DELETE
	// upstream). At most half of the table (100,000). Default 1024.
	MaxHTTPSessionsPerSubject int `yaml:"max_http_sessions_per_subject"`

	// Request bodies. The gateway authenticates a request from its headers
	// before it reads any of its body; the body is then read under
	// BodyReadTimeout and the shared BodyBytesInFlight budget, its buffer
	// growing as data arrives (never sized from Content-Length).

	// BodyReadTimeout bounds the time to receive a request body once the
	// caller is authenticated (and a form body of the built-in
	// authorization server). Default 20s; a slower body gets 408.
	BodyReadTimeout Duration `yaml:"body_read_timeout"`
	// BodyBytesInFlight bounds the bytes of request bodies held in memory
	// at once, over all requests (MCP POSTs and authorization-server forms,
	// while they are read and until their request ends). One caller may
	// hold at most a quarter of it. Default 64 MiB; when exhausted the
	// request gets 503 with Retry-After.
	BodyBytesInFlight int64 `yaml:"body_bytes_in_flight"`
	// MaxFormBytes bounds a request body of the built-in authorization
	// server (register, token, par, introspect, revoke, …). Default 64 KiB.
	MaxFormBytes int64 `yaml:"max_form_bytes"`

	// DPoP replay store (per upstream). A DPoP proof's jti is recorded
	// after the rate limit, until the proof can no longer be accepted
	// (iat + 5 min, or its server nonce's expiry if sooner); entries are
	// charged to the token's issuer and subject.

	// DPoPReplayEntries bounds the jti entries of one upstream. Default
	// 200000; when full, a DPoP request gets 503 with Retry-After.
	DPoPReplayEntries int `yaml:"dpop_replay_entries"`
	// DPoPReplayPerSubject bounds the entries one subject holds on one
	// upstream (at most dpop_replay_entries), so that one subject sending
	// many proofs refuses only itself: beyond it its DPoP requests get 429
	// with Retry-After. Default 10000 (the default rate limit of 20/s,
	// burst 40, allows about 6,000 proofs in a 5-minute window).
	DPoPReplayPerSubject int `yaml:"dpop_replay_per_subject"`

	// FormBytesInFlight is the separate budget of the built-in
	// authorization server's request bodies (token, par, register,
	// introspect, revoke, sign-in and consent forms), which arrive before
	// anyone is authenticated: they never draw on BodyBytesInFlight, so
	// unauthenticated traffic cannot starve authenticated MCP requests.
	// One client address (IPv6: its /64) may hold at most a sixteenth of
	// it (at least MaxFormBytes). Default 8 MiB; must be at least
	// MaxFormBytes.
	FormBytesInFlight int64 `yaml:"form_bytes_in_flight"`

	// Connections. Every listener the gateway serves (main, TLS, metrics)
	// counts against these caps at accept time.

	// MaxConnections bounds the connections open at once over all
	// listeners. At the cap, a new connection closes the connection that
	// has been idle longest (keep-alive, still sending its request
	// headers, or waiting for an authorization-server form body); when
	// none is idle, the new connection is closed. It is lowered at start
	// to half of what RLIMIT_NOFILE leaves after 64 descriptors, so the
	// other half stays free for upstream connections, stdio children and
	// files. Default 2048.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAddress bounds the connections of one peer address
	// (IPv6: one /64); beyond it a new connection is closed at once.
	// Peers in trusted_proxies are exempt (they carry many clients).
	// Default 128; -1 turns the per-address cap off.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// IdleTimeout closes a keep-alive connection that sends no new
	// request. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is a separate address for /metrics; "" serves /metrics on the
	// main listener only if ServeOnMain.
	Listen      string `yaml:"listen"`
	ServeOnMain bool   `yaml:"serve_on_main"`
}

// Duration is a time.Duration that reads "30s", "5m" or an integer of seconds.
type Duration struct{ time.Duration }
