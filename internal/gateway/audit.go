package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
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

// auditLog writes audit records as JSON lines.
type auditLog struct {
	mu  sync.Mutex // guards w
	w   io.Writer
	c   io.Closer
	off bool
}

// openAudit opens the audit destination: "" or "-" is stderr; a path is
// opened for appending and created 0600 (an existing file's permissions are
// tightened to 0600).
func openAudit(path string, disabled bool, stderr io.Writer) (*auditLog, error) {
	if disabled {
		return &auditLog{off: true}, nil
	}
	if path == "" || path == "-" {
		return &auditLog{w: stderr}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit.file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit.file: %w", err)
	}
	return &auditLog{w: f, c: f}, nil
}

func (a *auditLog) write(rec *auditRecord) {
	if a == nil || a.off {
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	_, _ = a.w.Write(b)
	a.mu.Unlock()
}

func (a *auditLog) Close() error {
	if a == nil || a.c == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.c.Close()
	a.c, a.off = nil, true
	return err
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
