package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

func engine(t testing.TB, p config.Policy) *Engine {
	t.Helper()
	e, err := Compile(p, map[string][]string{"admin": {"write"}, "write": {"read"}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecide(t *testing.T) {
	p := config.Policy{
		Default:        "deny",
		RequiredScopes: []string{"read"},
		Methods:        []config.Rule{{Match: "logging/*", Scopes: []string{"admin"}}, {Match: "sampling/*", Deny: true}},
		Tools: []config.Rule{
			{Match: "get_*"},
			{Match: "delete_*", Deny: true},
			{Match: "create_*", Scopes: []string{"write"}},
			{Match: "*_secret", Claims: []config.ClaimCondition{{Claim: "groups", AnyOf: []string{"ops"}}}},
			{Match: "mail_*", Claims: []config.ClaimCondition{{Claim: "email", Suffix: []string{"@example.com"}}}},
		},
		Resources: []config.Rule{{Match: "file:///public/*"}},
	}
	e := engine(t, p)
	reader := &Caller{Subject: "r", Scopes: []string{"read"}}
	writer := &Caller{Subject: "w", Scopes: []string{"write"}}
	admin := &Caller{Subject: "a", Scopes: []string{"admin"}, Claims: map[string]any{"groups": []any{"dev", "ops"}, "email": "a@EXAMPLE.com"}}
	none := &Caller{Subject: "n"}
	rows := []struct {
		c      *Caller
		method string
		name   string
		allow  bool
		need   string
	}{
		{reader, "initialize", "", true, ""},
		{none, "initialize", "", false, "read"},
		{reader, "tools/list", "", true, ""},
		{reader, "tools/call", "get_issue", true, ""},
		{reader, "tools/call", "create_issue", false, "read write"},
		{writer, "tools/call", "create_issue", true, ""},
		{admin, "tools/call", "create_issue", true, ""}, // transitive hierarchy admin → write → read
		{admin, "tools/call", "delete_repo", false, ""},
		{reader, "tools/call", "unknown", false, ""},     // default deny
		{reader, "tools/call", "get_x_secret", true, ""}, // first match wins (get_*)
		{reader, "tools/call", "x_secret", false, ""},
		{admin, "tools/call", "x_secret", true, ""},
		{admin, "tools/call", "mail_send", true, ""},
		{writer, "tools/call", "mail_send", false, ""}, // claim missing
		{reader, "resources/read", "file:///public/a/b.txt", true, ""},
		{reader, "resources/read", "file:///private/x", false, ""},
		{reader, "logging/setLevel", "", true, ""}, // plumbing
		{reader, "sampling/createMessage", "", false, ""},
		{reader, "notifications/initialized", "", true, ""},
		{none, "", "", true, ""}, // responses
	}
	for _, r := range rows {
		d := e.Decide(r.c, r.method, r.name)
		if d.Allow != r.allow {
			t.Errorf("%s %s %s: allow=%v (%s), want %v", r.c.Subject, r.method, r.name, d.Allow, d.Reason, r.allow)
		}
		if !d.Allow && d.Status != 403 {
			t.Errorf("%s %s: status %d", r.method, r.name, d.Status)
		}
		if got := strings.Join(d.NeedScopes, " "); r.need != "" && got != r.need {
			t.Errorf("%s %s %s: need %q, want %q", r.c.Subject, r.method, r.name, got, r.need)
		}
	}
}

func TestDefaultAllow(t *testing.T) {
	e := engine(t, config.Policy{Default: "allow", Tools: []config.Rule{{Match: "x", Deny: true}}})
	c := &Caller{}
	if !e.Decide(c, "tools/call", "y").Allow || e.Decide(c, "tools/call", "x").Allow || !e.Decide(c, "custom/method", "").Allow {
		t.Fatal("default allow")
	}
}

func TestGlob(t *testing.T) {
	for _, r := range []struct {
		p, s string
		ok   bool
	}{{"*", "", true}, {"a*", "abc", true}, {"a*c", "abbbc", true}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"*b*", "aaa", false},
		{"file:///*", "file:///a/b", true}, {"get_*_x", "get_a_b_x", true}, {"exact", "exact2", false}} {
		if compileGlob(r.p).matches(r.s) != r.ok {
			t.Errorf("%q ~ %q: want %v", r.p, r.s, r.ok)
		}
	}
}

func TestFilterResult(t *testing.T) {
	e := engine(t, config.Policy{Default: "allow", Tools: []config.Rule{{Match: "admin_*", Scopes: []string{"admin"}}},
		Prompts: []config.Rule{{Match: "secret", Deny: true}}, Resources: []config.Rule{{Match: "file:///private/*", Deny: true}}})
	c := &Caller{Scopes: []string{"read"}}
	in := `{"tools":[{"name":"echo","inputSchema":{"type":"object"},"x-extra":  1},{"name":"admin_rm"}],"nextCursor":"abc",  "_meta":{"k":[1, 2]}}`
	out, changed := e.FilterResult(c, "tools/list", json.RawMessage(in))
	if !changed {
		t.Fatal("admin_rm not removed")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if string(m["tools"]) != `[{"name":"echo","inputSchema":{"type":"object"},"x-extra":  1}]` || string(m["nextCursor"]) != `"abc"` || string(m["_meta"]) != `{"k":[1, 2]}` {
		t.Fatalf("entries or other members altered: %s", out)
	}
	// Nothing to remove: unchanged, same bytes.
	same := `{"tools":[{"name":"echo"}]}`
	if out, changed := e.FilterResult(c, "tools/list", json.RawMessage(same)); changed || string(out) != same {
		t.Fatal("unchanged result rewritten")
	}
	// Each list kind.
	if out, _ := e.FilterResult(c, "prompts/list", json.RawMessage(`{"prompts":[{"name":"secret"},{"name":"hi"}]}`)); !strings.Contains(string(out), "hi") || strings.Contains(string(out), "secret") {
		t.Fatalf("prompts: %s", out)
	}
	if out, _ := e.FilterResult(c, "resources/list", json.RawMessage(`{"resources":[{"uri":"file:///private/k"},{"uri":"file:///pub"}]}`)); strings.Contains(string(out), "private") {
		t.Fatalf("resources: %s", out)
	}
	if out, _ := e.FilterResult(c, "resources/templates/list", json.RawMessage(`{"resourceTemplates":[{"uriTemplate":"file:///private/{x}"}]}`)); strings.Contains(string(out), "private") {
		t.Fatalf("templates: %s", out)
	}
	// Malformed results are returned unchanged, never dropped.
	for _, bad := range []string{`[]`, `{"tools":5}`, `not json`, `{"other":[]}`} {
		if out, changed := e.FilterResult(c, "tools/list", json.RawMessage(bad)); changed || string(out) != bad {
			t.Fatalf("%s → %s", bad, out)
		}
	}
}

func FuzzFilterResult(f *testing.F) {
	e, _ := Compile(config.Policy{Default: "deny", Tools: []config.Rule{{Match: "ok*"}}}, nil)
	f.Add([]byte(`{"tools":[{"name":"ok1"},{"name":"no"}]}`))
	f.Add([]byte(`{"tools":[1,{"name":2}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, changed := e.FilterResult(&Caller{}, "tools/list", b)
		if !changed && string(out) != string(b) {
			t.Fatal("unchanged result altered")
		}
		if changed {
			var m struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			}
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("filtered result is not JSON: %s", out)
			}
			for _, tl := range m.Tools {
				if !strings.HasPrefix(tl.Name, "ok") {
					t.Fatalf("denied tool %q kept", tl.Name)
				}
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	e := engine(b, config.Policy{Default: "deny", RequiredScopes: []string{"read"}, Tools: []config.Rule{{Match: "get_*"}, {Match: "create_*", Scopes: []string{"write"}}}})
	c := &Caller{Scopes: []string{"admin"}}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Decide(c, "tools/call", "create_issue").Allow {
			b.Fatal("denied")
		}
	}
}

func BenchmarkFilterToolsList(b *testing.B) {
	e := engine(b, config.Policy{Default: "allow", Tools: []config.Rule{{Match: "admin_*", Scopes: []string{"admin"}}}})
	var sb strings.Builder
	sb.WriteString(`{"tools":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		name := "tool"
		if i%10 == 0 {
			name = "admin"
		}
		sb.WriteString(`{"name":"` + name + `_` + strings.Repeat("x", i%7) + `","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}}}`)
	}
	sb.WriteString(`]}`)
	in := json.RawMessage(sb.String())
	c := &Caller{Scopes: []string{"read"}}
	b.ReportAllocs()
	for b.Loop() {
		e.FilterResult(c, "tools/list", in)
	}
}

func TestFilterDuplicateMembers(t *testing.T) {
	e := engine(t, config.Policy{Default: "allow", Tools: []config.Rule{{Match: "bad", Deny: true}}})
	out, changed := e.FilterResult(&Caller{}, "tools/list", json.RawMessage(`{"tools":[{"name":"bad"}],"tools":[{"name":"bad"},{"name":"ok"}]}`))
	if !changed || strings.Contains(string(out), `"bad"`) {
		t.Fatalf("duplicate member kept a denied entry: %s", out)
	}
}
