package config

// Audit configures the tamper-evident JSON-lines audit log
// (internal/auditlog; docs/operations.md §Audit verification).
type Audit struct {
	// File is the audit log path; "-" or "" means stderr. Created 0600.
	// A file continues its hash chain across restarts; stderr starts a
	// new chain each run.
	File string `yaml:"file"`
	// Disabled turns the audit log off.
	Disabled bool `yaml:"disabled"`
	// RotateBytes renames File to File.<UTC time> before it would grow
	// past this size; the next file continues the chain. Default 0: never
	// (rotating the file from outside breaks the chain's continuity at
	// the next restart unless the rotated name follows that pattern).
	RotateBytes int64 `yaml:"rotate_bytes"`
	// Sign adds Ed25519 signatures. Default: unsigned.
	Sign AuditSign `yaml:"sign"`
	// Syslog sends a copy of each record to a local syslog daemon.
	// Default: off.
	Syslog AuditSyslog `yaml:"syslog"`
}

// AuditSign configures the signatures over the audit chain.
type AuditSign struct {
	// KeyFile is an Ed25519 private key (PEM PKCS #8, from `mcpgate audit
	// keygen`), mode 0600. "" means unsigned.
	KeyFile string `yaml:"key_file"`
	// Every signs every Every-th record (1: each record). Default 1000.
	Every int `yaml:"every"`
	// Interval writes a signed checkpoint when records have waited this
	// long unsigned. Default 10s.
	Interval Duration `yaml:"interval"`
}

// AuditSyslog configures the RFC 5424 copy of the audit log.
type AuditSyslog struct {
	// Network is unixgram (/dev/log), unix, udp or tcp; "" is off.
	Network string `yaml:"network"`
	// Address is the socket path or a loopback host:port.
	Address string `yaml:"address"`
	// Facility is a syslog facility name. Default authpriv.
	Facility string `yaml:"facility"`
	// AppName is the RFC 5424 APP-NAME. Default mcpgate.
	AppName string `yaml:"app_name"`
}

// minRotateBytes keeps rotation from producing a file per few records.
const minRotateBytes = 64 << 10

// validateAudit checks the audit keys whose meaning does not need the
// files (the key file and the syslog address are checked when the gateway
// opens them).
func validateAudit(a Audit, v *validator) {
	if a.RotateBytes < 0 || (a.RotateBytes > 0 && a.RotateBytes < minRotateBytes) {
		v.add("audit.rotate_bytes", "%d: use 0 (no rotation) or at least %d, e.g. 104857600 (100 MiB)", a.RotateBytes, minRotateBytes)
	}
	if a.RotateBytes > 0 && (a.File == "" || a.File == "-") {
		v.add("audit.rotate_bytes", "rotation needs audit.file: stderr cannot be rotated")
	}
	if a.Sign.Every < 0 {
		v.add("audit.sign.every", "%d: use 1 (sign each record) or more, e.g. 1000", a.Sign.Every)
	}
	if a.Sign.Interval.Duration < 0 {
		v.add("audit.sign.interval", "%s: must be positive, e.g. 10s", a.Sign.Interval.Duration)
	}
	if a.Sign.KeyFile == "" && (a.Sign.Every != 0 || a.Sign.Interval.Duration != 0) {
		v.add("audit.sign", "every/interval without key_file: create a key with 'mcpgate audit keygen --out FILE' and set audit.sign.key_file")
	}
	if a.Syslog.Network == "" && a.Syslog.Address != "" {
		v.add("audit.syslog.network", "set unixgram, unix, udp or tcp for address %q", a.Syslog.Address)
	}
}
