package gateway

import (
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
)

// decide runs the policy on one message, on the target its server acts on
// (mcp.Envelope.Name, read from the method's own member).
func decide(eng *policy.Engine, c *policy.Caller, e *mcp.Envelope) policy.Decision {
	if e.Method == "completion/complete" {
		return eng.DecideCompletion(c, e.Ref, e.Name)
	}
	return eng.Decide(c, e.Method, e.Name)
}
