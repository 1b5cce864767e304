package config

// BuiltinAuthorizeLimits bound what /authorize and /par, which anyone can
// call with a self-registered client, make the built-in server store.
// Unset or 0 takes the default.
type BuiltinAuthorizeLimits struct {
	// MaxPendingFlows: authorization requests in progress (each kept
	// 15 min) at once; beyond, 503 with Retry-After. Default 10000.
	MaxPendingFlows int `yaml:"max_pending_flows"`
	// MaxPushedRequests: pushed authorization requests (each kept 90 s)
	// at once; beyond, 503. Default 5000.
	MaxPushedRequests int `yaml:"max_pushed_requests"`
	// PerAddressPerMinute: requests to /authorize, and separately to
	// /par, per client address (IPv6: per /64; the forwarded address
	// behind trusted_proxies) in any minute; beyond, 429. Default 60.
	PerAddressPerMinute int `yaml:"per_address_per_minute"`
	// PerMinute: the same from all addresses together. Default 6000.
	PerMinute int `yaml:"per_minute"`
}

func (v *validator) authorizeLimits(key string, l *BuiltinAuthorizeLimits) {
	for k, n := range map[string]int{"max_pending_flows": l.MaxPendingFlows, "max_pushed_requests": l.MaxPushedRequests,
		"per_address_per_minute": l.PerAddressPerMinute, "per_minute": l.PerMinute} {
		if n < 0 {
			v.add(key+"."+k, "%d: use a positive number, or leave it unset for the default", n)
		}
	}
	if l.PerAddressPerMinute > 0 && l.PerMinute > 0 && l.PerAddressPerMinute > l.PerMinute {
		v.add(key+".per_address_per_minute", "%d is above per_minute %d", l.PerAddressPerMinute, l.PerMinute)
	}
}
