package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// hiddenEntry is the oracle of the list filter fuzzer, independent of the
// policy engine: what the fuzz policy hides, by list member.
func hiddenEntry(member string, entry any) bool {
	obj, ok := entry.(map[string]any)
	if !ok {
		return false
	}
	str := func(k string) string { s, _ := obj[k].(string); return s }
	switch member {
	case "tools":
		return strings.HasPrefix(str("name"), "hidden_")
	case "prompts":
		return strings.HasPrefix(str("name"), "secret")
	case "resources":
		return strings.HasPrefix(str("uri"), "file:///secret")
	case "resourceTemplates":
		return strings.HasPrefix(str("uriTemplate"), "file:///secret")
	}
	return false
}

// assertNothingHidden decodes what the caller receives the way JSON.parse
// does (exact member names, the last duplicate kept) and fails on any
// hidden entry in any list member of any result.
func assertNothingHidden(t *testing.T, what string, out []byte) {
	t.Helper()
	var v any
	if json.Unmarshal(out, &v) != nil {
		return // no client reads anything from it
	}
	msgs, ok := v.([]any)
	if !ok {
		msgs = []any{v}
	}
	for _, m := range msgs {
		obj, _ := m.(map[string]any)
		res, _ := obj["result"].(map[string]any)
		for member, list := range res {
			entries, _ := list.([]any)
			for _, e := range entries {
				if hiddenEntry(member, e) {
					t.Fatalf("%s: hidden %s entry %v passed: %s", what, member, e, out)
				}
			}
		}
	}
}

func fuzzMount(t testing.TB) *mount {
	eng, err := policy.Compile(config.Policy{
		Default:   "allow",
		Tools:     []config.Rule{{Match: "hidden_*", Deny: true}},
		Prompts:   []config.Rule{{Match: "secret*", Deny: true}},
		Resources: []config.Rule{{Match: "file:///secret*", Deny: true}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &mount{params: newParamHeaders()}
	m.policy.Store(eng)
	return m
}

// FuzzListFilter: no hidden entry ever reaches the caller, whatever the
// request ids are and however they are spelled, whatever the batch shape
// of the request and of the reply, whatever id the reply carries — on a
// POST's replies (JSON or SSE, every upstream kind applies the same
// filter per message) and on streams.
func FuzzListFilter(f *testing.F) {
	tools := `{"tools":[{"name":"echo"},{"name":"hidden_wipe"}]}`
	for _, s := range [][2]string{
		{`{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"result":` + tools + `}`},
		{`{"jsonrpc":"2.0","id":"\u0061","method":"prompts/list"}`, `{"jsonrpc":"2.0","id":"a","result":{"prompts":[{"name":"secret"},{"name":"ok"}]}}`},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"resources/list"}]`, `[{"jsonrpc":"2.0","id":2,"result":` + tools + `},{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///secret/x"}]}}]`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, `{"jsonrpc":"2.0","id":1,"result":{"\u0074ools":[{"name":"hidden_x"}],"resourceTemplates":[{"uriTemplate":"file:///secret/{a}"}]}}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}],"tools":[{"name":"hidden_2"}]}}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"Result":{},"result":` + tools + `}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `[[{"jsonrpc":"2.0","id":1,"result":` + tools + `}]]`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok","name":"hidden_dup"}]}}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	m := fuzzMount(f)
	p := &resource.Principal{Subject: "fuzz"}
	f.Fuzz(func(t *testing.T, req, reply []byte) {
		msgs, batch, err := mcp.Peek(req, 16)
		if err != nil {
			return // refused before anything is forwarded
		}
		x := &exchange{m: m, msgs: msgs, batch: batch, p: p}
		// A JSON reply body (single or batch) and an SSE event's data
		// (one message) go through the same per-message filter.
		assertNothingHidden(t, "POST reply", x.replyFilter().ApplyBody(reply))
		assertNothingHidden(t, "stream event", x.streamFilter().Apply(reply))
	})
}
