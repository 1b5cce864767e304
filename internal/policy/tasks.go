package policy

import "strings"

// DecideTask returns whether c may call method (tasks/get, tasks/update,
// tasks/cancel, tasks/result) on a task created by a tools/call of tool. A
// task carries the result of the call that created it, so the caller must
// still be allowed that call: a method rule for the tasks method applies
// first (it may deny, or require more scopes), then the decision for
// tools/call tool with its rules. A caller who lost access to a tool
// cannot poll, answer or fetch the result of its tasks.
func (e *Engine) DecideTask(c *Caller, method, tool string) Decision {
	if r := first(e.methods, method); r != nil {
		if !e.hasAll(c.Scopes, e.required) {
			return e.deny(e.required, nil, "required_scopes", "the upstream requires scope "+strings.Join(e.required, " "))
		}
		if d, done := e.apply(r, c, "method "+method); done {
			return d
		}
	}
	return e.Decide(c, "tools/call", tool)
}
