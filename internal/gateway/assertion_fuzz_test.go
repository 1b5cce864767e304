package gateway

import (
	"encoding/json"
	"testing"
)

// FuzzActorClaim: whatever act claim a verified token carries, the
// assertion's act holds only identity members (sub, iss, act), nests at
// most maxActDepth actors, and every actor names a subject.
func FuzzActorClaim(f *testing.F) {
	for _, s := range []string{`{"sub":"a"}`, `{"sub":"a","iss":"i","exp":1,"act":{"sub":"b","aud":"x"}}`, `"a"`, `{"iss":"x"}`, `{"sub":"a","act":[]}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var v any
		if json.Unmarshal([]byte(in), &v) != nil {
			return
		}
		out, err := actorClaim(v, 0)
		if err != nil || out == nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("act %s: %v", out, err)
		}
		for depth := 1; m != nil; depth++ {
			if depth > maxActDepth {
				t.Fatalf("act %s nests more than %d", out, maxActDepth)
			}
			for k := range m {
				if k != "sub" && k != "iss" && k != "act" {
					t.Fatalf("act %s has member %q", out, k)
				}
			}
			if s, _ := m["sub"].(string); s == "" {
				t.Fatalf("act %s: an actor without sub", out)
			}
			m, _ = m["act"].(map[string]any)
		}
	})
}
