package authserver

import (
	"encoding/json"
	"fmt"
	"slices"
)

// initGrantPolicy applies the defaults of the grant and registration
// settings and checks them against the configured clients.
func (s *Server) initGrantPolicy() error {
	s.cfg.RegistrationLimits.applyDefaults()
	s.reg = newRegistrationLimiter(s.cfg.RegistrationLimits)
	s.flows = newAuthorizeGuard(s.cfg.AuthorizeLimits)
	for _, id := range s.cfg.IntrospectionClients {
		i := slices.IndexFunc(s.cfg.Clients, func(c StaticClient) bool { return c.ID == id })
		if i < 0 || s.cfg.Clients[i].Secret == "" {
			return fmt.Errorf("introspection client %q is not a configured confidential client", id)
		}
	}
	for _, c := range s.cfg.Clients {
		if slices.Contains(c.GrantTypes, "client_credentials") && len(c.Scopes) == 0 {
			return fmt.Errorf("client %q has the client credentials grant but no scopes: list the scopes it may get", c.ID)
		}
	}
	return nil
}

// clientCredentialScopes are the scopes a client may get with no user
// involved: a configured client's own list; a client registered with the
// initial access token, its registered scopes that the operator still
// allows; anyone else none. Never "every scope of the resource".
func (s *Server) clientCredentialScopes(c *client) []string {
	switch c.Kind {
	case "static":
		return c.Scopes
	case "dcr":
		if !c.WithToken {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(c.Scopes), func(sc string) bool {
			return !slices.Contains(s.cfg.RegistrationClientCredentialsScopes, sc)
		})
	}
	return nil
}

// mayIntrospect: introspection tells whoever asks who a token belongs to
// and what it may do, so it is for resource servers: only the configured
// confidential clients listed in IntrospectionClients (none when the list
// is empty), never a self-registered or metadata-document client.
func (s *Server) mayIntrospect(c *client) bool {
	if c.Kind != "static" || c.public() {
		return false
	}
	return slices.Contains(s.cfg.IntrospectionClients, c.ID)
}

// markUsed keeps a registered client for good once it completed a grant;
// until then it expires (RegistrationLimits.UnusedClientTTL).
func (s *Server) markUsed(c *client) {
	if c.Kind != "dcr" || !c.Used.IsZero() {
		return
	}
	raw, _ := s.cfg.Store.Get("clients", c.ID)
	if raw == nil {
		return
	}
	var stored client
	if json.Unmarshal(raw, &stored) != nil {
		return
	}
	stored.Used = s.now()
	raw, _ = json.Marshal(stored)
	if err := s.cfg.Store.Put("clients", c.ID, raw, 0); err != nil {
		s.cfg.Log.Warn("keeping a used client failed", "client_id", c.ID, "err", err)
	}
	c.Used = stored.Used
}
