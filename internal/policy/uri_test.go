package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

func uriEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := Compile(config.Policy{
		Default: "allow",
		Tools:   []config.Rule{{Match: "get-env", Deny: true}, {Match: "trigger-*", Deny: true}},
		Prompts: []config.Rule{{Match: "args-prompt", Deny: true}},
		Resources: []config.Rule{
			{Match: "demo://resource/static/document/architecture.md", Deny: true},
			{Match: "demo://resource/dynamic/text/*", Deny: true},
			{Match: "file:///srv/private/*", Deny: true},
			{Match: "file:///srv/one/?", Deny: true},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestResourceSpellingsNeverAllowed: the policy itself never allows a
// resource uri that is not in canonical form, on any resource method, so
// a spelling the server normalises to a denied resource is not "default
// allow" (review-gw finding 1).
func TestResourceSpellingsNeverAllowed(t *testing.T) {
	e := uriEngine(t)
	c := &Caller{Subject: "mallory"}
	for _, u := range []string{
		"DEMO://resource/static/document/architecture.md",
		"demo://resource/static/x/../document/architecture.md",
		" demo://resource/static/document/architecture.md",
		"demo:/\t/resource/static/document/architecture.md",
		"Demo://resource/dynamic/text/1",
		"demo://resource/dynamic/./text/1",
		"file:///srv/public/../private/x",
		"FILE:///srv/private/x",
		"file:///srv//private/x",
		"file:///srv/%70rivate/x",
	} {
		for _, m := range []string{"resources/read", "resources/subscribe", "resources/unsubscribe"} {
			if d := e.Decide(c, m, u); d.Allow || d.Status != 403 {
				t.Errorf("%s %q: %+v", m, u, d)
			}
		}
		if d := e.DecideCompletion(c, "ref/resource", u); d.Allow {
			t.Errorf("complete %q: %+v", u, d)
		}
	}
	if d := e.Decide(c, "resources/read", "file:///srv/public/x"); !d.Allow {
		t.Errorf("canonical allowed uri: %+v", d)
	}
	if d := e.DecideCompletion(c, "ref/resource", "file:///srv/public/{x}"); !d.Allow {
		t.Errorf("canonical allowed template: %+v", d)
	}
}

// TestResourceGlobPercentAtom: '?' takes a whole %XX and '*' does not end
// inside one, so a rule means the same on the decoded path.
func TestResourceGlobPercentAtom(t *testing.T) {
	e := uriEngine(t)
	c := &Caller{}
	for u, allow := range map[string]bool{
		"file:///srv/one/a":    false,
		"file:///srv/one/%20":  false, // one decoded character: the ? rule denies it
		"file:///srv/one/%C3":  false,
		"file:///srv/one/%20a": true,
		"file:///srv/one/ab":   true,
	} {
		if d := e.Decide(c, "resources/read", u); d.Allow != allow {
			t.Errorf("%q: %+v, want allow %v", u, d, allow)
		}
	}
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"file:///a/*20", "file:///a/x%20", false},
		{"file:///a/*%20", "file:///a/x%20", true},
		{"file:///a/*", "file:///a/%20%C3%A9", true},
		{"file:///a/??", "file:///a/%C3%A9", true},
		{"file:///a/???", "file:///a/%C3%A9", false},
		{"*%20", "file:///a%20", true},
		{"*0", "file:///a%20", false},
		{"file:///a/%20", "file:///a/%20", true},
	} {
		if got := globMatchAtoms(tc.p, tc.s); got != tc.ok {
			t.Errorf("%q ~ %q: %v", tc.p, tc.s, got)
		}
	}
}

// TestResourcePatternMustBeCanonical: a resource rule that no canonical
// uri can match (a deny rule that would silently never apply) is a
// configuration error.
func TestResourcePatternMustBeCanonical(t *testing.T) {
	for p, ok := range map[string]bool{
		"*":                        true,
		"?*":                       true,
		"file:///srv/private/*":    true,
		"file:///secret*":          true,
		"demo*":                    true,
		"https://*":                true,
		"https://example.com*":     true,
		"demo://h/x?y=*":           true,
		"demo://h/{id}":            true,
		"FILE:///srv/private/*":    false,
		"file:///srv/a/../b/*":     false,
		"file:///srv//b/*":         false,
		"file:///srv/a b/*":        false,
		"demo://h/%2e/*":           false,
		"demo://h/%7e*":            false,
		"demo://h/%2*":             false,
		"demo://h/%c3%a9":          false,
		"DEMO*":                    false,
		"http://Example.com/*":     false,
		"file://localhost/srv/*":   false,
		" demo://resource/static/": false,
	} {
		_, err := Compile(config.Policy{Resources: []config.Rule{{Match: p, Deny: true}}}, nil)
		if (err == nil) != ok {
			t.Errorf("%q: %v, want accepted %v", p, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "resources[0].match") {
			t.Errorf("%q: error %v does not name the key", p, err)
		}
	}
}

// TestFilterDropsNonCanonicalResources: a listed resource or template
// whose uri is not canonical is dropped (the gateway would refuse to
// read it, and the rules cannot judge it).
func TestFilterDropsNonCanonicalResources(t *testing.T) {
	e := uriEngine(t)
	res := json.RawMessage(`{"resources":[{"uri":"file:///srv/public/a"},{"uri":"FILE:///srv/private/x"},{"uri":"file:///srv/public/../private/x"},{"uri":"file:///srv/private/y"}],` +
		`"resourceTemplates":[{"uriTemplate":"file:///srv/public/{x}"},{"uriTemplate":"DEMO://resource/dynamic/text/{id}"},{"uriTemplate":"demo://resource/dynamic/text/{id}"}]}`)
	out, changed := e.FilterLists(&Caller{}, res)
	s := string(out)
	if !changed || !strings.Contains(s, "file:///srv/public/a") || !strings.Contains(s, "file:///srv/public/{x}") || strings.Contains(s, "private") || strings.Contains(s, "dynamic") {
		t.Fatalf("filtered: %s", s)
	}
}

// TestNamesAreExactStrings: tool and prompt names are compared byte for
// byte: no case folding, trimming or Unicode normalisation, the same as
// the servers' own lookups (a map by name in the SDKs), so a variant names
// another (unknown) tool, and the rules still deny every exact match.
func TestNamesAreExactStrings(t *testing.T) {
	e := uriEngine(t)
	c := &Caller{}
	for name, allow := range map[string]bool{
		"get-env":        false,
		"trigger-x":      false,
		"trigger-":       false,
		"trigger-\u00e9": false,
		"Get-Env":        true,
		"get-env ":       true,
		" get-env":       true,
		"get\u2010env":   true,
		"Trigger-x":      true,
		"xtrigger-x":     true,
	} {
		if d := e.Decide(c, "tools/call", name); d.Allow != allow {
			t.Errorf("tool %q: %+v, want allow %v", name, d, allow)
		}
	}
	if d := e.Decide(c, "prompts/get", "ARGS-PROMPT"); !d.Allow {
		t.Errorf("prompt case variant: %+v", d)
	}
}
