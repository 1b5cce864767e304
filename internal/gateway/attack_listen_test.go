package gateway

import "testing"

// TestAttackListenResourceSubscriptions: 2026-07-28 subscriptions/listen
// replaces resources/subscribe ("notifications": {"resourceSubscriptions":
// [...]}: "Receive notifications/resources/updated for these resource
// URIs", basic/patterns/subscriptions). A resource the policy denies for
// resources/subscribe must not be subscribable this way, in any spelling.
func TestAttackListenResourceSubscriptions(t *testing.T) {
	tg := startGateway(t, routingPolicy)
	tok := tg.token(t, "mallory", "mcp:read")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	listen := func(notifications string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{` + meta + `,"notifications":` + notifications + `}}`
	}
	h := with(bearer(tok), "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "subscriptions/listen")
	for _, c := range []struct {
		name, notifications string
		want                int
	}{
		{"denied uri", `{"resourceSubscriptions":["file:///secret/key"]}`, 403},
		{"denied after an allowed one", `{"resourceSubscriptions":["file:///public","file:///secret/key"]}`, 403},
		{"escaped member name", `{"resource\u0053ubscriptions":["file:///secret/key"]}`, 403},
		{"escaped uri", `{"resourceSubscriptions":["file:///\u0073ecret/key"]}`, 403},
		{"duplicate member, denied last", `{"resourceSubscriptions":["file:///public"],"resourceSubscriptions":["file:///secret/key"]}`, 403},
		{"upper-case scheme", `{"resourceSubscriptions":["FILE:///secret/key"]}`, 400},
		{"dot segment", `{"resourceSubscriptions":["file:///public/../secret/key"]}`, 400},
		{"not an array", `{"resourceSubscriptions":"file:///secret/key"}`, 400},
		{"not strings", `{"resourceSubscriptions":[{"uri":"file:///secret/key"}]}`, 400},
	} {
		if r := tg.do(t, "POST", "/mcp", listen(c.notifications), h); r.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.want)
		}
	}
	if b := tg.up.sawAny("secret", "ecret"); b != "" {
		t.Fatalf("the upstream received a denied subscription: %s", b)
	}
}
