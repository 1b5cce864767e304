package policy

import (
	"slices"
	"sort"
)

// ScopesFor returns every scope the operation method on name (the routing
// key, as for Decide) needs: the upstream-wide required scopes, the scopes
// of the first method rule that matches and those of the first tool,
// prompt or resource rule that matches, sorted and without duplicates. It
// is what a challenge names so that one authorization covers the
// operation ("servers SHOULD include all scopes required for the current
// operation in a single challenge", 2026-07-28 authorization §Runtime
// Insufficient Scope Errors). A deny rule adds nothing: no scope helps.
func (e *Engine) ScopesFor(method, name string) []string {
	need := slices.Clone(e.required)
	if method != "" && !plumbing(method) {
		if r := first(e.methods, method); r != nil && !r.deny {
			need = append(need, r.scopes...)
		}
		var rules []rule
		switch method {
		case "tools/call":
			rules = e.tools
		case "prompts/get":
			rules = e.prompts
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			rules = e.resources
		}
		if r := first(rules, name); r != nil && !r.deny {
			need = append(need, r.scopes...)
		}
	}
	return SortedSet(need)
}

// Required returns the upstream-wide required scopes: the base every
// request needs.
func (e *Engine) Required() []string { return slices.Clone(e.required) }

// Privileged returns the scopes only some operations need: those a rule
// names that are not upstream-wide required scopes, and every scope that
// implies one of them through the hierarchy. They are asked for by step-up
// (403 insufficient_scope) when such an operation is attempted, not up
// front (security best practices §Scope Minimization: "Incremental
// elevation via targeted WWW-Authenticate scope challenges when privileged
// operations are first attempted").
func (e *Engine) Privileged() []string {
	base := map[string]bool{}
	for _, s := range e.required {
		base[s] = true
	}
	priv := map[string]bool{}
	for _, rs := range [][]rule{e.methods, e.tools, e.prompts, e.resources} {
		for _, r := range rs {
			for _, s := range r.scopes {
				if !base[s] {
					priv[s] = true
				}
			}
		}
	}
	for broad, implied := range e.implied {
		for _, s := range implied {
			if priv[s] && !base[broad] {
				priv[broad] = true
			}
		}
	}
	out := make([]string, 0, len(priv))
	for s := range priv {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// SortedSet returns the distinct strings of in, sorted.
func SortedSet(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	return slices.Compact(out)
}
