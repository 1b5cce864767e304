package main

import (
	"fmt"
	"net/url"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
)

// enterpriseConfig maps builtin.trusted_idps and
// builtin.trusted_workload_issuers (docs/enterprise.md). Each issuer gets
// its own TLS fetcher with its CA file; an IdP on an http loopback URL is
// allowed (config validation refuses http elsewhere), a workload issuer
// never.
func enterpriseConfig(ac *authserver.Config, b config.Builtin) error {
	for i, p := range b.TrustedIdPs {
		fetch, err := authserver.NewIssuerFetcher(p.CAFile, loopbackHTTP(p.Issuer, p.JWKSURI))
		if err != nil {
			return fmt.Errorf("builtin.trusted_idps[%d]: %w", i, err)
		}
		idp := authserver.TrustedIdP{Issuer: p.Issuer, JWKSURI: p.JWKSURI, Fetch: fetch, ClientIDs: p.ClientIDs, EmailDomains: p.EmailDomains,
			GroupsClaim: p.GroupsClaim, Groups: p.Groups, MaxLifetime: p.MaxLifetime.Duration}
		for _, r := range p.Scopes {
			idp.Scopes = append(idp.Scopes, authserver.ScopeRule{Resource: r.Resource, Groups: r.Groups, Scopes: r.Scopes})
		}
		ac.TrustedIdPs = append(ac.TrustedIdPs, idp)
	}
	for i, w := range b.TrustedWorkloadIssuers {
		fetch, err := authserver.NewIssuerFetcher(w.CAFile, false)
		if err != nil {
			return fmt.Errorf("builtin.trusted_workload_issuers[%d]: %w", i, err)
		}
		wi := authserver.WorkloadIssuer{Issuer: w.Issuer, JWKSURI: w.JWKSURI, Fetch: fetch, Audience: w.Audience, MaxLifetime: w.MaxLifetime.Duration}
		for _, r := range w.Subjects {
			wi.Subjects = append(wi.Subjects, authserver.WorkloadRule{Subject: r.Subject, Claims: r.Claims, Resource: r.Resource, Scopes: r.Scopes})
		}
		ac.WorkloadIssuers = append(ac.WorkloadIssuers, wi)
	}
	return nil
}

// loopbackHTTP: every given URL that is http is on a loopback host.
func loopbackHTTP(urls ...string) bool {
	seen := false
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" {
			continue
		}
		if !config.IsLoopbackListen(u.Hostname()) {
			return false
		}
		seen = true
	}
	return seen
}
