package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/vault"
)

func init() {
	commands["hash-password"] = command{"print an argon2id hash for the built-in server's password file", runHashPassword}
}

// newBuiltinAS starts the built-in authorization server for cfg (issuer =
// the public URL) and makes every upstream trust it: it is added to the
// trusted issuers with its own JWKS, so no further configuration is needed.
//
// nonces is the DPoP nonce source the gateway's upstreams use too; the
// token and PAR endpoints demand its nonces with builtin.dpop_nonce.
// With shared state (rs, state.redis) their DPoP jti store is in Redis, so
// that a proof used at one replica's token endpoint is refused by all.
func newBuiltinAS(ctx context.Context, cfg *config.Gateway, log *slog.Logger, getenv func(string) string, nonces dpop.NonceSource, rs *state.Redis) (http.Handler, func(), error) {
	b := cfg.Builtin
	var store authserver.Store
	var err error
	if b.StoreEnv != "" {
		dsn := getenv(b.StoreEnv)
		if dsn == "" {
			return nil, nil, fmt.Errorf("builtin.store_env: environment variable %s is empty", b.StoreEnv)
		}
		if store, err = authserver.OpenPostgres(ctx, dsn); err != nil {
			return nil, nil, err
		}
	} else {
		path := b.Store
		if path == "" {
			dir, err := vault.Dir(getenv)
			if err != nil {
				return nil, nil, err
			}
			path = filepath.Join(dir, "authserver.db")
		}
		if store, err = authserver.OpenBolt(path); err != nil {
			return nil, nil, err
		}
	}
	users := &authserver.Users{}
	if b.UsersFile != "" {
		if users, err = authserver.LoadUsers(b.UsersFile); err != nil {
			store.Close()
			return nil, nil, fmt.Errorf("builtin.users_file: %w", err)
		}
	}
	ac, err := builtinConfig(cfg, store, users, log, getenv)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	if b.DPoPNonce {
		ac.DPoPNonces = nonces
	}
	if rs != nil {
		ac.DPoPReplay = state.NewReplay(rs, "as", authserver.TokenReplayPerClient)
		ac.AssertionReplay = state.NewReplay(rs, "as-assertion", authserver.AssertionReplayPerOwner)
	}
	as, err := authserver.New(ac)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	trustBuiltin(cfg)
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := as.Rotate(); err != nil {
					log.Error("signing key rotation failed", "err", err)
				}
				if n, err := as.Sweep(); err != nil {
					log.Error("deleting expired authorization server state failed", "err", err)
				} else if n > 0 {
					log.Debug("expired authorization server state deleted", "entries", n)
				}
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return as, func() { close(stop); store.Close() }, nil
}

// serveNonces is the one DPoP nonce source of `mcpgate serve` (nil when
// no upstream and not the built-in server demands nonces): every upstream
// and the authorization server accept the same nonces, as the client keeps
// one nonce per origin.
func serveNonces(cfg *config.Gateway, getenv func(string) string) (dpop.NonceSource, error) {
	need := cfg.AuthorizationServer == "builtin" && cfg.Builtin.DPoPNonce
	for _, u := range cfg.Upstreams {
		need = need || u.DPoPNonce
	}
	if !need {
		return nil, nil
	}
	return resource.NewNonceSource(cfg.DPoPNonces, cfg.PublicURL, getenv)
}

// builtinConfig maps the gateway configuration to the server's.
// A configured secret that cannot be read is an error: the client would
// otherwise silently become public.
func builtinConfig(cfg *config.Gateway, store authserver.Store, users *authserver.Users, log *slog.Logger, getenv func(string) string) (authserver.Config, error) {
	b := cfg.Builtin
	ac := authserver.Config{Issuer: cfg.PublicURL, Users: users, Store: store, Log: log, RequirePAR: b.RequirePAR,
		AccessTokenTTL: b.AccessTokenTTL.Duration, RefreshTokenTTL: b.RefreshTokenTTL.Duration, KeyRotation: b.KeyRotation.Duration,
		DisableRegistration: b.Registration == "off",
		DefaultScopes:       b.DefaultScopes, RegistrationClientCredentialsScopes: b.RegistrationClientCredentialsScopes,
		IntrospectionClients: b.IntrospectionClients,
		RegistrationLimits: authserver.RegistrationLimits{PerAddressPerHour: b.RegistrationLimits.PerAddressPerHour, PerHour: b.RegistrationLimits.PerHour,
			MaxClients: b.RegistrationLimits.MaxClients, UnusedClientTTL: b.RegistrationLimits.UnusedClientTTL.Duration,
			MaxBodyBytes: b.RegistrationLimits.MaxBodyBytes, MaxNameChars: b.RegistrationLimits.MaxNameChars,
			MaxURIBytes: b.RegistrationLimits.MaxURIBytes, MaxRedirectURIs: b.RegistrationLimits.MaxRedirectURIs},
		TrustedProxies: cfg.TrustedProxies, SignIn: signInLimits(b.SignIn),
		AuthorizeLimits: authserver.AuthorizeLimits{MaxPendingFlows: b.AuthorizeLimits.MaxPendingFlows, MaxPushedRequests: b.AuthorizeLimits.MaxPushedRequests,
			PerAddressPerMinute: b.AuthorizeLimits.PerAddressPerMinute, PerMinute: b.AuthorizeLimits.PerMinute}}
	if b.Registration == "token" {
		ac.RegistrationToken = getenv(b.RegistrationTokenEnv)
	}
	if fe := b.Federation; fe != nil {
		secret, err := config.ReadSecret("builtin.federation.client_secret_env", fe.ClientSecretEnv, "builtin.federation.client_secret_file", fe.ClientSecretFile, getenv)
		if err != nil {
			return ac, err
		}
		ac.Federation = &authserver.Federation{Issuer: fe.Issuer, ClientID: fe.ClientID, ClientSecret: secret, Scopes: fe.Scopes, SubjectClaim: fe.SubjectClaim,
			GitHub: fe.Provider == "github", GitHubURL: fe.GitHubURL, GitHubAPIURL: fe.GitHubAPIURL}
		if ac.Federation.Tokens, err = federatedTokens(fe.Tokens, getenv); err != nil {
			return ac, err
		}
	}
	for _, u := range cfg.Upstreams {
		ac.Resources = append(ac.Resources, authserver.Resource{ID: u.Resource, Scopes: u.ScopesSupported})
	}
	for _, r := range b.ExchangeResources {
		ac.ExchangeResources = append(ac.ExchangeResources, authserver.Resource{ID: r.Resource, Scopes: r.Scopes})
	}
	for i, c := range b.Clients {
		secret := ""
		if c.SecretEnv != "" || c.SecretFile != "" {
			key := fmt.Sprintf("builtin.clients[%d].", i)
			var err error
			if secret, err = config.ReadSecret(key+"secret_env", c.SecretEnv, key+"secret_file", c.SecretFile, getenv); err != nil {
				return ac, err
			}
		}
		sc := authserver.StaticClient{ID: c.ID, Secret: secret, Name: c.Name, RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
			DPoPBound: c.DPoPBoundAccessTokens, JWKSURI: c.JWKSURI}
		if c.JWKSFile != "" {
			var err error
			if sc.JWKS, err = os.ReadFile(c.JWKSFile); err != nil {
				return ac, fmt.Errorf("builtin.clients[%d].jwks_file: %w", i, err)
			}
		}
		ac.Clients = append(ac.Clients, sc)
	}
	if err := enterpriseConfig(&ac, b); err != nil {
		return ac, err
	}
	return ac, nil
}

// federatedTokens reads the sealing key of builtin.federation.tokens (nil:
// the provider's tokens are not kept).
func federatedTokens(t *config.FederatedTokens, getenv func(string) string) (*authserver.FederatedTokens, error) {
	if t == nil {
		return nil, nil
	}
	key, err := config.ReadSecret("builtin.federation.tokens.key_env", t.KeyEnv, "builtin.federation.tokens.key_file", t.KeyFile, getenv)
	if err != nil {
		return nil, err
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("builtin.federation.tokens: the key has %d bytes; use at least 32 (e.g. openssl rand -base64 48)", len(key))
	}
	return &authserver.FederatedTokens{Key: []byte(key), RefreshBefore: t.RefreshBefore.Duration}, nil
}

// trustBuiltin adds the built-in issuer to the trusted issuers of every
// upstream, with its JWKS location (no discovery round trip needed).
func trustBuiltin(cfg *config.Gateway) {
	iss := config.Issuer{Issuer: cfg.PublicURL, JWKSURI: cfg.PublicURL + "/jwks", Algorithms: []string{"ES256"}}
	for _, i := range cfg.Issuers {
		if i.Issuer == iss.Issuer {
			return
		}
	}
	cfg.Issuers = append(cfg.Issuers, iss)
	cfg.ApplyDefaults()
}

func runHashPassword(_ context.Context, args []string, e *env) int {
	if len(args) > 0 {
		fmt.Fprintln(e.stderr, "mcpgate hash-password: the password is read from the terminal or stdin, never from arguments")
		return 2
	}
	var pw string
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return fail(e, "hash-password", err)
		}
		pw = string(b)
	} else {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fail(e, "hash-password", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	h, err := authserver.HashPassword(pw)
	if err != nil {
		return fail(e, "hash-password", err)
	}
	fmt.Fprintln(e.stdout, h)
	return 0
}

// signInLimits maps builtin.sign_in (0 keeps each default).
func signInLimits(s config.BuiltinSignIn) authserver.SignInLimits {
	return authserver.SignInLimits{MaxConcurrentHashes: s.MaxConcurrentHashes, MaxQueuedHashes: s.MaxQueuedHashes,
		HashQueueTimeout: s.HashQueueTimeout.Duration, FailuresBeforeDelay: s.FailuresBeforeDelay,
		AddressFailuresBeforeDelay: s.AddressFailuresBeforeDelay, UserFailuresBeforeDelay: s.UserFailuresBeforeDelay,
		BaseDelay: s.BaseDelay.Duration, MaxDelay: s.MaxDelay.Duration, MaxTracked: s.MaxTracked}
}
