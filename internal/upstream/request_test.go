package upstream

import (
	"strings"
	"testing"
)

// TestRequestNeedsAFilter: a Request cannot reach a handler without a
// response filter. Leaving the filter out of NewRequest, or passing nil,
// does not compile (ResponseFilter is a struct); what still compiles — the
// zero ResponseFilter, Filtered(nil), a Request literal — panics before a
// response could pass unfiltered.
func TestRequestNeedsAFilter(t *testing.T) {
	var nilFilter Filter
	for name, build := range map[string]func() Filter{
		"zero ResponseFilter": func() Filter { return NewRequest(Caller{}, ResponseFilter{}).Filter() },
		"Filtered(nil)":       func() Filter { return NewRequest(Caller{}, Filtered(nilFilter)).Filter() },
		"Request literal":     func() Filter { return (&Request{Caller: Caller{Owner: "o"}}).Filter() },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "filter") {
					t.Fatalf("no panic naming the filter: %v", r)
				}
			}()
			build()
			t.Fatal("a Request without a filter was usable")
		})
	}
	if f := NewRequest(Caller{}, NoFilter).Filter(); f != nil {
		t.Fatal("NoFilter is not the identity")
	}
	f := NewRequest(Caller{}, Filtered(func([]byte) []byte { return []byte("x") })).Filter()
	if f == nil || string(f([]byte("y"))) != "x" {
		t.Fatal("Filtered(f) does not filter with f")
	}
}
