package gateway

import "testing"

func TestAuditRecordsGrant(t *testing.T) {
	var rec auditRecord
	rec.grantOf(map[string]any{"mcpgate_grant": map[string]any{"type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "profile": "urn:ietf:params:oauth:grant-profile:id-jag", "iss": "https://idp.example"}})
	if rec.Grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" || rec.GrantProfile != "urn:ietf:params:oauth:grant-profile:id-jag" || rec.GrantIssuer != "https://idp.example" {
		t.Fatalf("audit record %+v lacks the grant", rec)
	}
	rec = auditRecord{}
	rec.grantOf(map[string]any{"mcpgate_grant": "not an object"})
	if rec.Grant != "" {
		t.Fatal("a malformed claim was audited")
	}
}
