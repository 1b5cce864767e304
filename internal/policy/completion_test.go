package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestDecideCompletion: completing a prompt's or resource template's
// arguments needs the prompt or resource itself (issue 11, hole 6).
func TestDecideCompletion(t *testing.T) {
	e := engine(t, config.Policy{
		Default:   "allow",
		Prompts:   []config.Rule{{Match: "secret*", Deny: true}, {Match: "team_*", Scopes: []string{"write"}}},
		Resources: []config.Rule{{Match: "file:///secret/*", Deny: true}},
	})
	reader := &Caller{Scopes: []string{"read"}}
	rows := []struct {
		ref, name string
		c         *Caller
		allow     bool
	}{
		{"ref/prompt", "greet", reader, true},
		{"ref/prompt", "secret_plan", reader, false},
		{"ref/prompt", "team_notes", reader, false},
		{"ref/prompt", "team_notes", &Caller{Scopes: []string{"admin"}}, true},
		{"ref/resource", "file:///public/{x}", reader, true},
		{"ref/resource", "file:///secret/{x}", reader, false},
		{"ref/tool", "greet", reader, false},
		{"", "greet", reader, false},
	}
	for _, r := range rows {
		if d := e.DecideCompletion(r.c, r.ref, r.name); d.Allow != r.allow {
			t.Errorf("%s %s: %+v, want allow=%v", r.ref, r.name, d, r.allow)
		}
	}
	if d := e.Decide(reader, "completion/complete", "greet"); d.Allow {
		t.Errorf("completion/complete without a ref allowed: %+v", d)
	}
	if d := e.DecideCompletion(reader, "ref/prompt", "team_notes"); len(d.NeedScopes) == 0 {
		t.Errorf("no scopes named: %+v", d)
	}
	// a method rule for completion/complete applies first
	deny := engine(t, config.Policy{Default: "allow", Methods: []config.Rule{{Match: "completion/complete", Deny: true}}})
	if d := deny.DecideCompletion(reader, "ref/prompt", "greet"); d.Allow {
		t.Errorf("method rule ignored: %+v", d)
	}
	// and default deny covers prompts no rule names
	dd := engine(t, config.Policy{Default: "deny", Prompts: []config.Rule{{Match: "greet"}}})
	if !dd.DecideCompletion(reader, "ref/prompt", "greet").Allow || dd.DecideCompletion(reader, "ref/prompt", "other").Allow {
		t.Error("default deny")
	}
}

// TestFilterLists: every list member of a result is filtered, whatever
// request the result answers.
func TestFilterLists(t *testing.T) {
	e := engine(t, config.Policy{
		Default:   "allow",
		Tools:     []config.Rule{{Match: "hidden_*", Deny: true}},
		Prompts:   []config.Rule{{Match: "secret*", Deny: true}},
		Resources: []config.Rule{{Match: "file:///secret*", Deny: true}},
	})
	in := `{"tools":[{"name":"echo"},{"name":"hidden_x"}],"prompts":[{"name":"secret"},{"name":"ok"}],` +
		`"resources":[{"uri":"file:///secret/a"}],"resourceTemplates":[{"uriTemplate":"file:///secret/{a}"},{"uriTemplate":"file:///p/{a}"}],` +
		`"\u0074ools":[{"name":"hidden_escaped"}],"other":[{"name":"hidden_kept"}]}`
	out, changed := e.FilterLists(&Caller{}, json.RawMessage(in))
	if !changed {
		t.Fatal("nothing filtered")
	}
	for _, hidden := range []string{"hidden_x", "secret", "file:///secret", "hidden_escaped"} {
		if strings.Contains(string(out), `"`+hidden) {
			t.Errorf("%s kept: %s", hidden, out)
		}
	}
	for _, kept := range []string{"echo", `"ok"`, "file:///p/{a}", "hidden_kept"} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("%s dropped: %s", kept, out)
		}
	}
	if out, changed := e.FilterLists(&Caller{}, json.RawMessage(`{"content":[]}`)); changed || string(out) != `{"content":[]}` {
		t.Errorf("a result without lists changed: %s", out)
	}
}
