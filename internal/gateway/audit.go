package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/internal/auditlog"
	"github.com/mcpgate/mcpgate/internal/config"
)

// auditRecord is one line of the audit log. It names who did what to which
// upstream and what the gateway decided; it never holds a token, only a
// short hash prefix of it (token_id) for correlation.
type auditRecord struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Subject   string    `json:"subject,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	TokenID   string    `json:"token_id,omitempty"`
	// Grant, GrantProfile, GrantIssuer: how a token of the built-in
	// server's JWT bearer grants was obtained (its mcpgate_grant claim):
	// the grant type, id-jag or workload-identity-federation, and the IdP
	// or workload issuer that vouched for the subject.
	Grant        string `json:"grant,omitempty"`
	GrantProfile string `json:"grant_profile,omitempty"`
	GrantIssuer  string `json:"grant_issuer,omitempty"`
	Upstream     string `json:"upstream"`
	Method       string `json:"method,omitempty"`
	Name         string `json:"name,omitempty"`
	TaskID       string `json:"task_id,omitempty"` // the task a tasks/* request or a task-creating tools/call names
	Tool         string `json:"tool,omitempty"`    // the tool whose call created that task
	Decision     string `json:"decision"`
	Reason       string `json:"reason,omitempty"`
	Status       int    `json:"status,omitempty"` // set on denials; allowed requests are not yet answered
	Remote       string `json:"remote,omitempty"`
	// Scopes are the scopes a scope_challenge asked for, or those a
	// scope_granted token now carries (elevation.go).
	Scopes []string `json:"scopes,omitempty"`
	// ChallengeRequestID is, on scope_granted, the request_id of the
	// scope_challenge it answers.
	ChallengeRequestID string `json:"challenge_request_id,omitempty"`
}

// auditLog writes audit records as JSON lines through the tamper-evident
// chain writer (internal/auditlog; docs/operations.md §Audit verification).
type auditLog struct {
	// w takes one JSON object per record: the chain writer, or a test's
	// buffer. Set before the gateway serves; safe for concurrent use.
	w   io.Writer
	c   io.Closer
	off bool
}

// openAudit opens the audit destination: "" or "-" is stderr (a new chain
// each run); a path is opened for appending, created 0600 (an existing
// file's permissions are tightened to 0600), and its chain continued.
func openAudit(cfg config.Audit, stderr io.Writer, log *slog.Logger) (*auditLog, error) {
	if cfg.Disabled {
		return &auditLog{off: true}, nil
	}
	o := auditlog.Options{Path: cfg.File, Stream: stderr, RotateBytes: cfg.RotateBytes,
		SignEvery: cfg.Sign.Every, SignInterval: cfg.Sign.Interval.Duration, Logger: log}
	if cfg.File == "-" {
		o.Path = ""
	}
	if cfg.Sign.KeyFile != "" {
		k, err := auditlog.LoadPrivateKey(cfg.Sign.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("audit.sign.key_file: %w", err)
		}
		o.Key = k
	}
	if cfg.Syslog.Network != "" {
		s, err := auditlog.DialSyslog(auditlog.SyslogOptions{Network: cfg.Syslog.Network, Address: cfg.Syslog.Address,
			Facility: cfg.Syslog.Facility, AppName: cfg.Syslog.AppName, Logger: log})
		if err != nil {
			return nil, err
		}
		o.Syslog = s
	}
	w, err := auditlog.Open(o)
	if err != nil {
		if o.Syslog != nil {
			o.Syslog.Close()
		}
		return nil, err
	}
	return &auditLog{w: w, c: w}, nil
}

func (a *auditLog) write(rec *auditRecord) {
	if a == nil || a.off {
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	_, _ = a.w.Write(append(b, '\n'))
}

// Close writes the chain's stop record and closes the file; idempotent.
func (a *auditLog) Close() error {
	if a == nil || a.c == nil {
		return nil
	}
	return a.c.Close()
}

// grantOf fills the grant fields from the token's mcpgate_grant claim.
func (rec *auditRecord) grantOf(claims map[string]any) {
	g, _ := claims["mcpgate_grant"].(map[string]any)
	if g == nil {
		return
	}
	rec.Grant, _ = g["type"].(string)
	rec.GrantProfile, _ = g["profile"].(string)
	rec.GrantIssuer, _ = g["iss"].(string)
}
