package config

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// FederatedToken configures upstream_auth.federated_token (issue 15, part
// 4): the gateway sends the caller's token from the built-in authorization
// server's federated identity provider, for upstreams whose audience is
// that provider (a Google Workspace MCP server behind Google sign-in). It
// needs authorization_server: builtin with builtin.federation.tokens.
type FederatedToken struct {
	// Token is which of the provider's tokens goes upstream:
	// "access_token" (default) or "id_token".
	Token string `yaml:"token"`
	// Header carries it. Default Authorization, as "Bearer <token>";
	// another header gets the bare token.
	Header string `yaml:"header"`
}

// FederatedTokens configures builtin.federation.tokens: the built-in
// server keeps each user's tokens from the federated provider (access,
// refresh, ID token), sealed with AES-256-GCM, in its store (bbolt, or
// PostgreSQL shared by the replicas), and refreshes them.
type FederatedTokens struct {
	// KeyFile or KeyEnv hold the sealing secret: at least 32 bytes (e.g.
	// the output of `openssl rand -base64 48`), the same on every replica.
	// A changed key makes the kept tokens unreadable: users sign in again.
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// RefreshBefore is how long before expiry a token is refreshed
	// (at most a quarter of its lifetime for short-lived tokens).
	// Default 60s; 0s to 1h.
	RefreshBefore Duration `yaml:"refresh_before"`
}

// envName is a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateFederatedTokens checks builtin.federation.tokens and every
// upstream's federated_token and child_env against the rest of the
// configuration.
func validateFederatedTokens(g *Gateway, v *validator) {
	kept := false
	if fe := g.Builtin.Federation; g.AuthorizationServer == "builtin" && fe != nil && fe.Tokens != nil {
		kept = true
		t := fe.Tokens
		if (t.KeyFile == "") == (t.KeyEnv == "") {
			v.add("builtin.federation.tokens", "set exactly one of key_file or key_env (a secret of at least 32 bytes that seals the kept tokens)")
		}
		if d := t.RefreshBefore.Duration; d < 0 || d > time.Hour {
			v.add("builtin.federation.tokens.refresh_before", "%v: use 0s to 1h", d)
		}
	}
	for i, u := range g.Upstreams {
		if u.UpstreamAuth == nil {
			continue
		}
		key := fmt.Sprintf("upstreams[%d].upstream_auth", i)
		validateFederatedToken(key, u, kept, v)
		validateChildEnv(key, u, v)
	}
}

func validateFederatedToken(key string, u Upstream, kept bool, v *validator) {
	f := u.UpstreamAuth.FederatedToken
	if f == nil {
		return
	}
	if !kept {
		v.add(key+".federated_token", "needs authorization_server: builtin with builtin.federation and builtin.federation.tokens (the kept tokens of the federated identity provider)")
	}
	if f.Token != "" && f.Token != "access_token" && f.Token != "id_token" {
		v.add(key+".federated_token.token", "%q: use access_token or id_token", f.Token)
	}
	if f.Header != "" && !validHeaderName(f.Header) {
		v.add(key+".federated_token.header", "%q is not a header name", f.Header)
	}
}

// validateChildEnv checks child_env: a command upstream, a per-caller mode
// that can yield a token for a child, a name that the configured
// environment does not already set.
func validateChildEnv(key string, u Upstream, v *validator) {
	a := u.UpstreamAuth
	name := a.ChildEnv
	envMode := a.FederatedToken != nil || a.TokenExchange != nil
	if name == "" {
		if u.Transport == "stdio" && envMode {
			v.add(key+".child_env", "a command upstream gets no headers: name the environment variable its child receives the caller's token in")
		}
		return
	}
	switch {
	case u.Transport != "stdio":
		v.add(key+".child_env", "only a command (stdio) upstream has a child process; send the credential in a header instead")
	case !envName.MatchString(name):
		v.add(key+".child_env", "%q is not an environment variable name (letters, digits, _)", name)
	case slices.Contains([]string{"PATH", "HOME", "LANG", "TMPDIR"}, name) || slices.Contains(u.InheritEnv, name):
		v.add(key+".child_env", "%s is already passed to the child: choose another name", name)
	case u.Env[name] != "":
		v.add(key+".child_env", "%s is also set in env: choose another name or remove it there", name)
	case !envMode:
		v.add(key+".child_env", "needs a per-caller mode that yields a token for the child: federated_token or token_exchange")
	case a.FederatedToken != nil && a.TokenExchange != nil:
		v.add(key+".child_env", "federated_token and token_exchange both yield a token for the child: keep one")
	}
}
