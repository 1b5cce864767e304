package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateAuditNamesKeyAndFix(t *testing.T) {
	cases := []struct {
		a    Audit
		want string
	}{
		{Audit{File: "/var/log/a", RotateBytes: 100}, "audit.rotate_bytes: 100: use 0"},
		{Audit{File: "/var/log/a", RotateBytes: -1}, "audit.rotate_bytes: -1"},
		{Audit{File: "-", RotateBytes: 1 << 20}, "rotation needs audit.file"},
		{Audit{Sign: AuditSign{KeyFile: "k", Every: -2}}, "audit.sign.every: -2"},
		{Audit{Sign: AuditSign{KeyFile: "k", Interval: Duration{-time.Second}}}, "audit.sign.interval"},
		{Audit{Sign: AuditSign{Every: 10}}, "mcpgate audit keygen"},
		{Audit{Syslog: AuditSyslog{Address: "/dev/log"}}, "audit.syslog.network"},
	}
	for _, c := range cases {
		var v validator
		validateAudit(c.a, &v)
		if err := v.err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.a, err, c.want)
		}
	}
	var v validator
	validateAudit(Audit{File: "/var/log/a", RotateBytes: 1 << 20, Sign: AuditSign{KeyFile: "k", Every: 1}}, &v)
	if err := v.err(); err != nil {
		t.Fatal(err)
	}
}
