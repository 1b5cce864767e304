package bridge

import (
	"strings"
	"testing"
)

// TestWithoutResultType: a session-era client gets 2026-07-28 results
// without resultType "complete" (its SDK refuses the unknown member on an
// empty result: TestStdioUpstreamEveryFeature); other results, other ids
// and errors pass unchanged.
func TestWithoutResultType(t *testing.T) {
	rows := []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}`, `{"id":1,"jsonrpc":"2.0","result":{}}`},
		{`{"jsonrpc":"2.0","id":1,"result":{"content":[],"resultType":"complete"}}`, `{"id":1,"jsonrpc":"2.0","result":{"content":[]}}`},
		{`{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t"}}`, ``},
		{`{"jsonrpc":"2.0","id":2,"result":{"resultType":"complete"}}`, ``},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}`, ``},
		{`{"jsonrpc":"2.0","method":"notifications/progress","params":{"resultType":"complete"}}`, ``},
	}
	for _, row := range rows {
		want := row.want
		if want == "" {
			want = row.in
		}
		if got := string(withoutResultType([]byte(row.in), "1")); got != want {
			t.Errorf("%s: got %s, want %s", row.in, got, want)
		}
	}
	if strings.Contains(string(withoutResultType([]byte(`{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}`), "1")), "resultType") {
		t.Fatal("resultType kept")
	}
}
