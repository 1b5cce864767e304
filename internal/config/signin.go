package config

import "time"

// BuiltinSignIn bounds the built-in server's sign-in: what one attempt
// can make the server do (a password check is argon2id, 64 MiB) and how
// fast passwords can be guessed. Unset or 0 takes the default.
type BuiltinSignIn struct {
	// MaxConcurrentHashes is how many password checks run at once.
	// Default 2.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
	// MaxQueuedHashes is how many more sign-ins may wait for a check; more
	// are answered 503 with Retry-After at once. Default 8.
	MaxQueuedHashes int `yaml:"max_queued_hashes"`
	// HashQueueTimeout is the longest wait for a check before 503.
	// Default 5s.
	HashQueueTimeout Duration `yaml:"hash_queue_timeout"`
	// FailuresBeforeDelay: wrong passwords one address may try for one
	// user name before each further try must wait (429). Default 3.
	FailuresBeforeDelay int `yaml:"failures_before_delay"`
	// AddressFailuresBeforeDelay: the same for one address, any names.
	// Default 20.
	AddressFailuresBeforeDelay int `yaml:"address_failures_before_delay"`
	// UserFailuresBeforeDelay: the same for one user name, any address;
	// a browser that signed in as that user before is exempt. Default 20.
	UserFailuresBeforeDelay int `yaml:"user_failures_before_delay"`
	// BaseDelay is the first wait, doubled with each further failure up
	// to MaxDelay. Defaults 1s and 15m.
	BaseDelay Duration `yaml:"base_delay"`
	MaxDelay  Duration `yaml:"max_delay"`
	// MaxTracked bounds the failure records kept in memory. Default 10000.
	MaxTracked int `yaml:"max_tracked"`
}

func (v *validator) signIn(key string, s *BuiltinSignIn) {
	for k, n := range map[string]int{"max_concurrent_hashes": s.MaxConcurrentHashes, "max_queued_hashes": s.MaxQueuedHashes,
		"failures_before_delay": s.FailuresBeforeDelay, "address_failures_before_delay": s.AddressFailuresBeforeDelay,
		"user_failures_before_delay": s.UserFailuresBeforeDelay, "max_tracked": s.MaxTracked} {
		if n < 0 {
			v.add(key+"."+k, "%d: use a positive number, or leave it unset for the default", n)
		}
	}
	if s.MaxConcurrentHashes > 64 {
		v.add(key+".max_concurrent_hashes", "%d: each check takes 64 MiB; use at most 64", s.MaxConcurrentHashes)
	}
	for k, d := range map[string]time.Duration{"hash_queue_timeout": s.HashQueueTimeout.Duration, "base_delay": s.BaseDelay.Duration, "max_delay": s.MaxDelay.Duration} {
		if d < 0 {
			v.add(key+"."+k, "%s: use a positive duration, or leave it unset for the default", d)
		}
	}
	if s.BaseDelay.Duration > 0 && s.MaxDelay.Duration > 0 && s.BaseDelay.Duration > s.MaxDelay.Duration {
		v.add(key+".base_delay", "%s is above max_delay %s", s.BaseDelay.Duration, s.MaxDelay.Duration)
	}
}
