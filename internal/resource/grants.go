package resource

import "slices"

// maxGrants bounds the grant types kept from one issuer's metadata.
const maxGrants = 16

// boundedGrants keeps at most maxGrants short grant type names, so that a
// metadata document cannot make the gateway hold more than that.
func boundedGrants(gs []string) []string {
	out := make([]string, 0, min(len(gs), maxGrants))
	for _, g := range gs {
		if len(out) == maxGrants {
			break
		}
		if len(g) <= 128 {
			out = append(out, g)
		}
	}
	return out
}

// Issuers lists the issuer identifiers this verifier trusts, in order.
func (v *Verifier) Issuers() []string {
	out := make([]string, 0, len(v.order))
	for _, k := range v.order {
		out = append(out, k.cfg.Issuer)
	}
	return out
}

// OffersGrant reports whether the metadata fetched for issuer lists grant
// in grant_types_supported. known is false when no metadata was fetched
// (jwks_uri configured, or not loaded yet): the gateway then knows nothing.
func (v *Verifier) OffersGrant(issuer, grant string) (offers, known bool) {
	k := v.issuers[issuer]
	if k == nil {
		return false, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.grants == nil {
		return false, false
	}
	return slices.Contains(k.grants, grant), true
}
