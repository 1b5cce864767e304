package resource

import (
	"fmt"
	"net/url"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
)

// NewNonceSource builds the stateless DPoP nonce source of the server at
// publicURL from the dpop_nonces configuration. Nonces are bound to the
// public origin, so every endpoint of the gateway (each upstream and the
// built-in authorization server, which share the origin and so the
// client's per-origin nonce) and every replica with the same key accepts
// them, and no other deployment does.
func NewNonceSource(n config.DPoPNonces, publicURL string, getenv func(string) string) (*dpop.AEADNonces, error) {
	cur, prev, err := n.NonceSecrets(getenv)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("dpop_nonces: public_url %q is not an absolute URL", publicURL)
	}
	src, err := dpop.NewAEADNonces(dpop.AEADNonceOptions{Secret: cur, Previous: prev, Purpose: u.Scheme + "://" + u.Host, Lifetime: n.Lifetime.Duration})
	if err != nil {
		return nil, fmt.Errorf("dpop_nonces: %w", err)
	}
	return src, nil
}
