// Package policy decides which MCP operations a caller may perform and
// filters list results to what the caller may use. It is pure: no I/O, no
// clocks, no globals.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Caller is the authenticated principal as the policy sees it.
type Caller struct {
	Subject string
	Scopes  []string
	Claims  map[string]any
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	// Status is 0 when allowed, 403 when denied.
	Status int
	// NeedScopes are all scopes the operation needs (upstream-wide and
	// rule scopes), sorted, for one insufficient_scope challenge.
	NeedScopes []string
	// Reason is safe to show to the client and to write to the audit log.
	Reason string
	// Rule names the rule that decided, e.g. "tools[2]".
	Rule string
}

// Engine is a compiled policy.
type Engine struct {
	deflt     bool // default allow
	required  []string
	claims    []config.ClaimCondition
	methods   []rule
	tools     []rule
	prompts   []rule
	resources []rule
	// implied maps each granted scope to every scope it implies
	// (transitive closure of the hierarchy, including itself).
	implied map[string][]string
}

type rule struct {
	id     string
	match  glob
	scopes []string
	claims []config.ClaimCondition
	deny   bool
	allow  string // precomputed reason, so allowed decisions do not allocate
}

// Compile prepares p for fast decisions: globs parsed, the scope hierarchy
// closed transitively.
func Compile(p config.Policy, hierarchy map[string][]string) (*Engine, error) {
	e := &Engine{deflt: p.Default != "deny", required: slices.Clone(p.RequiredScopes), claims: p.Claims, implied: closure(hierarchy)}
	if p.Default != "" && p.Default != "allow" && p.Default != "deny" {
		return nil, fmt.Errorf("default %q: use allow or deny", p.Default)
	}
	var err error
	if e.methods, err = compileRules("methods", p.Methods); err != nil {
		return nil, err
	}
	if e.tools, err = compileRules("tools", p.Tools); err != nil {
		return nil, err
	}
	if e.prompts, err = compileRules("prompts", p.Prompts); err != nil {
		return nil, err
	}
	if e.resources, err = compileRules("resources", p.Resources); err != nil {
		return nil, err
	}
	return e, nil
}

func compileRules(kind string, rs []config.Rule) ([]rule, error) {
	out := make([]rule, 0, len(rs))
	for i, r := range rs {
		if r.Match == "" {
			return nil, fmt.Errorf("%s[%d].match is empty", kind, i)
		}
		g := compileGlob(r.Match)
		if kind == "resources" {
			if err := resourcePattern(r.Match); err != nil {
				return nil, fmt.Errorf("%s[%d].match %q: %w", kind, i, r.Match, err)
			}
			g.atoms = true
		}
		out = append(out, rule{id: fmt.Sprintf("%s[%d]", kind, i), match: g, scopes: r.Scopes, claims: r.Claims, deny: r.Deny, allow: fmt.Sprintf("allowed by %s[%d]", kind, i)})
	}
	return out, nil
}

// closure computes, for every scope named in the hierarchy, the set of
// scopes it implies transitively.
func closure(h map[string][]string) map[string][]string {
	out := map[string][]string{}
	for top := range h {
		seen := map[string]bool{top: true}
		stack := []string{top}
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, n := range h[s] {
				if !seen[n] {
					seen[n] = true
					stack = append(stack, n)
				}
			}
		}
		for s := range seen {
			out[top] = append(out[top], s)
		}
	}
	return out
}

// has reports whether the caller's scopes grant s, directly or through the
// hierarchy.
func (e *Engine) has(granted []string, s string) bool {
	for _, g := range granted {
		if g == s {
			return true
		}
		for _, imp := range e.implied[g] {
			if imp == s {
				return true
			}
		}
	}
	return false
}

func (e *Engine) hasAll(granted, need []string) bool {
	for _, s := range need {
		if !e.has(granted, s) {
			return false
		}
	}
	return true
}

// plumbing methods are always allowed once the upstream-wide requirements
// hold: without them no session works.
func plumbing(method string) bool {
	switch method {
	case "initialize", "ping", "server/discover", "logging/setLevel", "subscriptions/listen":
		return true
	}
	return strings.HasPrefix(method, "notifications/")
}

// listMethod reports methods whose results are filtered instead of denied.
func listMethod(method string) bool {
	switch method {
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		return true
	}
	return false
}

// Decide returns whether c may call method on name, the request's routing
// key (mcp.Envelope.Name: the tool or prompt name, the resource uri).
// Responses (method "") are always allowed. completion/complete is
// decided by DecideCompletion; here it is refused, as it names no target.
func (e *Engine) Decide(c *Caller, method, name string) Decision {
	return e.decide(c, method, name, false)
}

// decide is Decide; template says name is a resource template (from a
// completion reference) rather than a resource uri.
func (e *Engine) decide(c *Caller, method, name string, template bool) Decision {
	if method == "" {
		return Decision{Allow: true, Reason: "response"}
	}
	if !e.hasAll(c.Scopes, e.required) {
		return e.deny(e.required, nil, "required_scopes", "the upstream requires scope "+strings.Join(e.required, " "))
	}
	if !claimsHold(e.claims, c.Claims) {
		return e.deny(nil, nil, "claims", "a required claim condition does not hold")
	}
	if plumbing(method) {
		return Decision{Allow: true, Reason: "protocol"}
	}
	if r := first(e.methods, method); r != nil {
		if d, done := e.apply(r, c, "method "+method); done {
			return d
		}
	}
	var rules []rule
	kind := ""
	switch method {
	case "tools/call":
		rules, kind = e.tools, "tool"
	case "prompts/get":
		rules, kind = e.prompts, "prompt"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		rules, kind = e.resources, "resource"
	}
	if kind == "resource" {
		// The gateway refuses these before the policy (mcp.Peek); a uri
		// not in canonical form could name another resource at the
		// server than the rules see, so it is never allowed here either.
		check := mcp.CheckResourceURI
		if template {
			check = mcp.CheckResourceTemplate
		}
		if err := check(name); err != nil {
			return Decision{Status: 403, Reason: "resource " + name + ": " + err.Error(), Rule: "canonical uri"}
		}
	}
	if kind != "" {
		if r := first(rules, name); r != nil {
			d, _ := e.apply(r, c, kind+" "+name)
			return d
		}
		return e.fallback(kind + " " + name)
	}
	if listMethod(method) {
		return Decision{Allow: true, Reason: "list (filtered)"}
	}
	if method == "completion/complete" {
		return Decision{Status: 403, Reason: "completion/complete needs a ref/prompt or ref/resource reference", Rule: "completion"}
	}
	return e.fallback("method " + method)
}

// DecideCompletion returns whether c may call completion/complete for the
// prompt (ref "ref/prompt", name its name) or resource template (ref
// "ref/resource", name its uri template) it references. Completing a
// prompt's arguments tells what the prompt takes, so the caller must be
// allowed the prompt itself: a method rule for completion/complete is
// applied first, then the decision for prompts/get name or
// resources/read name, with their rules.
func (e *Engine) DecideCompletion(c *Caller, ref, name string) Decision {
	var op string
	switch ref {
	case "ref/prompt":
		op = "prompts/get"
	case "ref/resource":
		op = "resources/read"
	default:
		return Decision{Status: 403, Reason: "completion/complete needs a ref/prompt or ref/resource reference", Rule: "completion"}
	}
	if r := first(e.methods, "completion/complete"); r != nil {
		if !e.hasAll(c.Scopes, e.required) {
			return e.deny(e.required, nil, "required_scopes", "the upstream requires scope "+strings.Join(e.required, " "))
		}
		if d, done := e.apply(r, c, "method completion/complete"); done {
			return d
		}
	}
	return e.decide(c, op, name, ref == "ref/resource")
}

// apply evaluates a matching rule. done is false when a method rule grants
// and the item rules still have to be consulted.
func (e *Engine) apply(r *rule, c *Caller, what string) (Decision, bool) {
	if r.deny {
		return Decision{Status: 403, Reason: what + " is denied by policy", Rule: r.id}, true
	}
	if !e.hasAll(c.Scopes, r.scopes) {
		return e.deny(append(slices.Clone(e.required), r.scopes...), r, r.id, what+" needs scope "+strings.Join(r.scopes, " ")), true
	}
	if !claimsHold(r.claims, c.Claims) {
		return Decision{Status: 403, Reason: what + ": a claim condition does not hold", Rule: r.id}, true
	}
	if strings.HasPrefix(r.id, "methods") {
		return Decision{}, false
	}
	return Decision{Allow: true, Reason: r.allow, Rule: r.id}, true
}

func (e *Engine) fallback(what string) Decision {
	if e.deflt {
		return Decision{Allow: true, Reason: "default allow", Rule: "default"}
	}
	return Decision{Status: 403, Reason: what + " is not allowed (default deny)", Rule: "default"}
}

func (e *Engine) deny(need []string, _ *rule, id, reason string) Decision {
	all := append(slices.Clone(e.required), need...)
	sort.Strings(all)
	return Decision{Status: 403, NeedScopes: slices.Compact(all), Reason: reason, Rule: id}
}

func first(rs []rule, name string) *rule {
	for i := range rs {
		if rs[i].match.matches(name) {
			return &rs[i]
		}
	}
	return nil
}

// claimsHold reports whether every condition holds for claims.
func claimsHold(conds []config.ClaimCondition, claims map[string]any) bool {
	for _, c := range conds {
		if !claimHolds(c, claims[c.Claim]) {
			return false
		}
	}
	return true
}

func claimHolds(c config.ClaimCondition, v any) bool {
	var vals []string
	switch t := v.(type) {
	case string:
		vals = []string{t}
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				vals = append(vals, s)
			}
		}
	case []string:
		vals = t
	default:
		return false
	}
	for _, s := range vals {
		if slices.Contains(c.AnyOf, s) {
			return true
		}
		for _, suf := range c.Suffix {
			if strings.HasSuffix(strings.ToLower(s), strings.ToLower(suf)) {
				return true
			}
		}
	}
	return false
}

// glob matches '*' (any run of characters, including '/') and '?' (one
// character); everything else is literal. For resource rules (atoms) a
// percent-encoding %XX is one character: '?' takes all of it and '*'
// never ends inside it, so a rule matches a canonical uri exactly when it
// matches its percent-decoded form (mcp.CheckResourceURI makes the
// encoding of a path one-to-one).
type glob struct {
	pattern string
	literal bool
	atoms   bool
}

func compileGlob(p string) glob { return glob{pattern: p, literal: !strings.ContainsAny(p, "*?")} }

func (g glob) matches(s string) bool {
	if g.literal {
		return g.pattern == s
	}
	if g.atoms {
		return globMatchAtoms(g.pattern, s)
	}
	return globMatch(g.pattern, s)
}

// globMatch is the classic iterative wildcard match with backtracking to
// the last star: linear in practice, no recursion.
func globMatch(p, s string) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// atom is the length of the character of s at i: 3 for a percent-encoding.
func atom(s string, i int) int {
	if s[i] == '%' && i+2 < len(s) {
		return 3
	}
	return 1
}

// globMatchAtoms is globMatch over atoms of s. Literal pattern bytes are
// compared one by one: a canonical pattern's %XX lines up with the
// subject's, as both start at an atom boundary.
func globMatchAtoms(p, s string) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '?':
			pi++
			si += atom(s, si)
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si] && (s[si] != '%' || pi+2 < len(p) && p[pi:pi+3] == s[si:min(si+3, len(s))]):
			n := atom(s, si)
			pi += n
			si += n
		case star >= 0:
			pi = star + 1
			mark += atom(s, mark)
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// resourcePattern refuses a resource rule that could match no canonical
// uri (mcp.CheckResourceURI): a deny rule written as, say,
// FILE:///srv/* or file:///srv/a/../b would never apply. Each wildcard is
// tried as a few stand-ins; one canonical result is enough.
func resourcePattern(p string) error {
	if strings.Trim(p, "*?") == "" {
		return nil
	}
	var first error
	for _, stand := range []string{"x", "/x", "x/x", "x:/x"} {
		s := strings.NewReplacer("*", stand, "?", stand).Replace(p)
		err := mcp.CheckResourceTemplate(s)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return fmt.Errorf("matches no resource uri in canonical form (%w)", first)
}
