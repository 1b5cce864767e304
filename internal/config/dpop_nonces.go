package config

import "time"

// dpopNonces checks the dpop_nonces section.
func (v *validator) dpopNonces(n *DPoPNonces) {
	if n.KeyFile != "" && n.KeyEnv != "" {
		v.add("dpop_nonces", "set key_file or key_env, not both")
	}
	if n.PreviousKeyFile != "" && n.PreviousKeyEnv != "" {
		v.add("dpop_nonces", "set previous_key_file or previous_key_env, not both")
	}
	if (n.PreviousKeyFile != "" || n.PreviousKeyEnv != "") && n.KeyFile == "" && n.KeyEnv == "" {
		v.add("dpop_nonces.previous_key_file", "a previous key needs the current one (key_file or key_env)")
	}
	if d := n.Lifetime.Duration; d != 0 && (d < 30*time.Second || d > time.Hour) {
		v.add("dpop_nonces.lifetime", "%v: use 30s to 1h (default 5m)", d)
	}
}

// NonceSecrets reads the current and previous DPoP nonce secrets; both nil
// when none is configured (a random key is then made at start).
func (n DPoPNonces) NonceSecrets(getenv func(string) string) (current, previous []byte, err error) {
	if n.KeyFile == "" && n.KeyEnv == "" {
		return nil, nil, nil
	}
	cur, err := ReadSecret("dpop_nonces.key_env", n.KeyEnv, "dpop_nonces.key_file", n.KeyFile, getenv)
	if err != nil {
		return nil, nil, err
	}
	if n.PreviousKeyFile == "" && n.PreviousKeyEnv == "" {
		return []byte(cur), nil, nil
	}
	prev, err := ReadSecret("dpop_nonces.previous_key_env", n.PreviousKeyEnv, "dpop_nonces.previous_key_file", n.PreviousKeyFile, getenv)
	if err != nil {
		return nil, nil, err
	}
	return []byte(cur), []byte(prev), nil
}
