package validate

// Combination is one documented values combination: docs/deployment.md
// lists each by name, and the tests render and validate every one.
type Combination struct {
	Name   string
	Values map[string]any // over the chart's values.yaml
}

// Combinations are the values combinations the chart supports and `make
// test` proves. A new documented combination is added here and to the
// table in docs/deployment.md (TestDocsListEveryCombination checks both).
var Combinations = []Combination{
	{"defaults", nil},
	{"redis", map[string]any{"state": map[string]any{"redis": map[string]any{
		"enabled": true, "url": "redis://redis.mcpgate.svc:6379/0"}}}},
	{"redis-secret", map[string]any{"state": map[string]any{"redis": map[string]any{
		"enabled": true, "url": "rediss://redis.mcpgate.svc:6380/0", "username": "mcpgate", "existingSecret": "mcpgate-redis"}},
		"config": map[string]any{"state": map[string]any{"redis": map[string]any{"key_prefix": "mcpgate-prod:",
			"tls": map[string]any{"server_name": "redis.mcpgate.svc"}}}}}},
	{"postgres", map[string]any{"authorizationServer": map[string]any{
		"builtin":  true,
		"postgres": map[string]any{"enabled": true, "existingSecret": "mcpgate-postgres"},
		"settings": map[string]any{"registration": "token", "registration_token_env": "MCPGATE_DCR_TOKEN"},
	}, "secretEnv": []any{map[string]any{"name": "MCPGATE_DCR_TOKEN", "secretName": "mcpgate-dcr", "key": "token"}}}},
	{"redis-replicas", map[string]any{"state": map[string]any{
		"redis":   map[string]any{"enabled": true, "url": "redis://redis.mcpgate.svc:6379/0", "existingSecret": "mcpgate-redis"},
		"replica": map[string]any{"existingSecret": "mcpgate-hop"}}}},
	{"redis-postgres", map[string]any{
		"state": map[string]any{"redis": map[string]any{"enabled": true, "url": "redis://redis:6379/0", "existingSecret": "mcpgate-redis"}},
		"authorizationServer": map[string]any{"builtin": true,
			"postgres": map[string]any{"enabled": true, "existingSecret": "mcpgate-postgres"}}}},
	{"builtin-single", map[string]any{"replicaCount": 1, "autoscaling": map[string]any{"enabled": false},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"authorizationServer": map[string]any{"builtin": true}}},
	{"servicemonitor", map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{
		"enabled": true, "labels": map[string]any{"release": "prometheus"}}}}},
	{"metrics-off", map[string]any{"metrics": map[string]any{"enabled": false}}},
	{"hpa-off", map[string]any{"autoscaling": map[string]any{"enabled": false}, "replicaCount": 5}},
	{"networkpolicy-off", map[string]any{"networkPolicy": map[string]any{"enabled": false}}},
	{"networkpolicy-narrow", map[string]any{"networkPolicy": map[string]any{
		"ingressFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{
			"kubernetes.io/metadata.name": "ingress-nginx"}}}},
		"egressTo": []any{map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}},
			"ports": []any{map[string]any{"port": 443, "protocol": "TCP"}}}}}}},
	{"ingress", map[string]any{"ingress": map[string]any{"enabled": true, "className": "nginx",
		"tlsSecretName": "mcp-example-com-tls"},
		"config": map[string]any{"trusted_proxies": []any{"10.0.0.0/8"}}}},
	{"secrets-env", map[string]any{"secretEnv": []any{
		map[string]any{"name": "FILES_UPSTREAM_TOKEN", "secretName": "mcpgate-upstream", "key": "token"}},
		"config": map[string]any{"upstreams": []any{map[string]any{"name": "files", "path": "/mcp",
			"url":           "http://files.mcp.svc:9000/mcp",
			"upstream_auth": map[string]any{"header": "Authorization", "value_env": "FILES_UPSTREAM_TOKEN"}}}}}},
}

// Refused are values the chart must refuse to render, each with a part of
// the message that tells the operator what to do.
var Refused = []struct {
	Name, Want string
	Values     map[string]any
}{
	{"builtin-bbolt-replicas", "needs authorizationServer.postgres.enabled",
		map[string]any{"authorizationServer": map[string]any{"builtin": true}}},
	{"postgres-no-secret", "authorizationServer.postgres.existingSecret is required",
		map[string]any{"authorizationServer": map[string]any{"builtin": true, "postgres": map[string]any{"enabled": true}}}},
	{"postgres-without-builtin", "needs authorizationServer.builtin: true",
		map[string]any{"authorizationServer": map[string]any{"postgres": map[string]any{"enabled": true, "existingSecret": "x"}}}},
	{"replica-no-redis", "state.replica.existingSecret needs state.redis.enabled",
		map[string]any{"state": map[string]any{"replica": map[string]any{"existingSecret": "mcpgate-hop"}}}},
	{"redis-no-url", "state.redis.enabled needs state.redis.url",
		map[string]any{"state": map[string]any{"redis": map[string]any{"enabled": true, "existingSecret": "x"}}}},
	{"redis-password-in-values", "must not carry a password",
		map[string]any{"state": map[string]any{"redis": map[string]any{"enabled": true, "url": "redis://:hunter2@redis:6379/0"}}}},
	{"listen-in-config", "set by the chart",
		map[string]any{"config": map[string]any{"listen": "0.0.0.0:1234"}}},
	{"misspelt-value", "replicasCount",
		map[string]any{"replicasCount": 2}},
	{"misspelt-nested-value", "existingSecrett",
		map[string]any{"state": map[string]any{"redis": map[string]any{"existingSecrett": "x"}}}},
	{"no-public-url", "public_url",
		map[string]any{"config": map[string]any{"public_url": nil}}},
}
